import math

import pytest
import torch

from r1lab.rl.losses import DAPOLoss, GRPOLoss, kl_k3


def test_k3_is_exp_r_minus_r_minus_one():
    logprobs = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    # r = log π_ref - log π = [-0.5, 1.0]
    expected = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    assert kl_k3(logprobs, ref)[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert kl_k3(logprobs, logprobs).abs().max() == 0


def test_ratio_is_clipped_at_one_plus_minus_eps():
    loss = GRPOLoss(eps=0.2, beta=0.0)
    old = torch.zeros(1, 4)
    # ratios e^x: 1.5 (A>0: clipped to 1.2), 0.5 (A>0: unclipped, min picks 0.5), 1.5 (A<0: unclipped 1.5),
    # 0.5 (A<0: clipped to 0.8)
    logprobs = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]])).requires_grad_()
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    out = loss(logprobs, old, None, advantages, torch.ones(1, 4))
    # per-token -min(ρA, clip(ρ)A): [-1.2, -0.5, 1.5, 0.8] → token-mean 0.15
    assert out.loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8) / 4, abs=1e-6)
    out.loss.backward()
    # Clipped tokens get no gradient; d(-ρA)/dlogp = -ρA/4 for the others.
    assert logprobs.grad[0].tolist() == pytest.approx([0.0, -0.5 / 4, 1.5 / 4, 0.0], abs=1e-6)
    assert out.metrics["clip_frac_high"] == pytest.approx(0.25)
    assert out.metrics["clip_frac_low"] == pytest.approx(0.25)
    assert out.metrics["clip_frac"] == pytest.approx(0.5)


def test_grpo_is_the_mean_of_per_sequence_token_means_with_padding():
    loss = GRPOLoss(eps=0.2, beta=0.5)
    logprobs = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -9.0, -9.0]])
    ref = torch.tensor([[-1.0, -2.0, -1.0], [-1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # second completion: one token, then padding
    advantages = torch.tensor([1.0, -1.0])
    out = loss(logprobs, logprobs.detach(), ref, advantages, mask)  # ratio 1: surrogate is -A per token
    k3 = lambda r: math.exp(r) - r - 1  # noqa: E731
    seq1 = (-1 + 0.5 * k3(0.0) - 1 + 0.5 * k3(-1.0) - 1 + 0.5 * k3(0.0)) / 3
    seq2 = 1 + 0.5 * k3(1.0)
    assert out.loss.item() == pytest.approx((seq1 + seq2) / 2, abs=1e-6)
    # KL metric: token-mean over real tokens only.
    assert out.metrics["kl"] == pytest.approx((k3(-1.0) + k3(1.0)) / 4, abs=1e-6)


@pytest.mark.parametrize("eps", [0.0, -0.1])
def test_non_positive_eps_is_an_error(eps):
    with pytest.raises(ValueError, match=r"loss.eps must be > 0"):
        GRPOLoss(eps=eps)


def test_negative_beta_is_an_error():
    with pytest.raises(ValueError, match="loss.beta"):
        GRPOLoss(beta=-0.1)


def test_reference_model_is_only_needed_with_kl():
    assert GRPOLoss(beta=0.0).needs_reference is False
    assert GRPOLoss(beta=0.04).needs_reference is True


def test_measure_kl_logs_the_kl_at_beta_zero_without_changing_the_loss():
    logprobs = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    mask, advantages = torch.ones(1, 2), torch.tensor([1.0])
    measured = GRPOLoss(beta=0.0, measure_kl=True)
    assert measured.needs_reference is True
    out = measured(logprobs, logprobs, ref, advantages, mask)
    plain = GRPOLoss(beta=0.0)(logprobs, logprobs, None, advantages, mask)
    assert out.loss.item() == pytest.approx(plain.loss.item())
    # k3 = exp(ref - lp) - (ref - lp) - 1 per token: (e^-0.5 + 0.5 - 1 + e^1 - 1 - 1) / 2
    expected = (math.exp(-0.5) + 0.5 - 1 + math.exp(1.0) - 1 - 1) / 2
    assert out.metrics["kl"] == pytest.approx(expected)


def ones_ratio_case():
    """Two completions (3 tokens and 1 token), ratio 1, so the surrogate is -A per token and KL is 0."""
    logprobs = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    return logprobs, mask


def test_dapo_takes_the_token_mean_over_the_batch():
    logprobs, mask = ones_ratio_case()
    out = DAPOLoss(beta=0.0)(logprobs, logprobs, None, torch.tensor([1.0, -2.0]), mask)
    assert out.loss.item() == pytest.approx((-1 - 1 - 1 + 2) / 4)
    grpo = GRPOLoss(beta=0.0)(logprobs, logprobs, None, torch.tensor([1.0, -2.0]), mask)
    assert grpo.loss.item() == pytest.approx((-1 + 2) / 2)


def test_dr_grpo_divides_the_token_sum_by_the_generation_budget():
    from r1lab.rl.losses import DrGRPOLoss

    logprobs, mask = ones_ratio_case()
    out = DrGRPOLoss(max_tokens=8, beta=0.0)(logprobs, logprobs, None, torch.tensor([1.0, -2.0]), mask)
    assert out.loss.item() == pytest.approx((-3 + 2) / (2 * 8))


def test_dr_grpo_does_not_favour_long_wrong_answers_where_grpo_does():
    """Liu et al. (2025): with per-completion length normalisation, each token of a long wrong answer is
    pushed down less than each token of a short one, so wrong answers drift longer. With a constant
    denominator every wrong token gets the same push."""
    from r1lab.rl.losses import DrGRPOLoss

    width = 10
    mask = torch.zeros(2, width)
    mask[0, :2] = 1  # a short wrong answer (2 tokens)
    mask[1, :] = 1  # a long wrong answer (10 tokens)
    advantages = torch.tensor([-1.0, -1.0])
    for loss, same_push in ((GRPOLoss(beta=0.0), False), (DrGRPOLoss(max_tokens=width, beta=0.0), True)):
        logprobs = torch.zeros(2, width, requires_grad=True)
        loss(logprobs, logprobs.detach(), None, advantages, mask).loss.backward()
        short_push, long_push = logprobs.grad[0, 0].item(), logprobs.grad[1, 0].item()
        assert short_push > 0 and long_push > 0  # gradient descent lowers both
        if same_push:
            assert long_push == pytest.approx(short_push)
        else:
            assert long_push == pytest.approx(short_push * 2 / 10)  # the long answer's tokens are barely punished


def test_clip_higher_widens_only_the_upper_side():
    loss = GRPOLoss(eps=0.2, eps_low=0.2, eps_high=0.28, beta=0.0)
    logprobs = torch.log(torch.tensor([[1.25, 1.5, 0.75]]))
    out = loss(logprobs, torch.zeros(1, 3), None, torch.tensor([[1.0, 1.0, -1.0]]), torch.ones(1, 3))
    # 1.25 < 1.28 is not clipped; 1.5 is clipped to 1.28; 0.75 < 0.8 with A < 0 is clipped to 0.8.
    assert out.loss.item() == pytest.approx((-1.25 - 1.28 + 0.8) / 3, abs=1e-6)
    assert out.metrics["clip_frac_high"] == pytest.approx(1 / 3)
    assert out.metrics["clip_frac_low"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eps_low": 0.0}, r"loss.eps_low must be in \(0, 1\)"), ({"eps_high": 1.5}, r"loss.eps_high must be in \(0, 1\)"),
    ({"eps_low": 0.3, "eps_high": 0.2}, "eps_high .* must be >= loss.eps_low"),
    ({"kl_estimator": "k4"}, r"kl_estimator must be one of \['k1', 'k2', 'k3'\]"),
])
def test_bad_loss_options_are_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GRPOLoss(**kwargs)


def test_kl_estimators_by_hand():
    from r1lab.rl.losses import kl_k1, kl_k2

    logprobs, ref = torch.tensor([-1.0]), torch.tensor([-1.5])  # log π - log π_ref = 0.5
    assert kl_k1(logprobs, ref).item() == pytest.approx(0.5)
    assert kl_k2(logprobs, ref).item() == pytest.approx(0.125)
    assert kl_k3(logprobs, ref).item() == pytest.approx(math.exp(-0.5) + 0.5 - 1)
    loss = GRPOLoss(beta=1.0, kl_estimator="k2")
    out = loss(logprobs[None], logprobs[None], ref[None], torch.tensor([0.0]), torch.ones(1, 1))
    assert out.loss.item() == pytest.approx(0.125) and out.metrics["kl"] == pytest.approx(0.125)


def make_rollout(truncated):
    from r1lab.rollout import Rollout

    n = len(truncated)
    return Rollout(prompts=["p"] * n, completions=["c"] * n, group_size=n, input_ids=torch.zeros(n, 4, dtype=torch.long),
                   attention_mask=torch.ones(n, 4), completion_mask=torch.tensor([[1.0, 1.0]] * n),
                   truncated=torch.tensor(truncated), old_logprobs=torch.tensor([[-1.0, -2.0]] * n),
                   ref_logprobs=torch.tensor([[-1.5, -2.0]] * n))


def test_kl_in_reward_moves_the_penalty_from_the_loss_to_the_reward():
    rollout = make_rollout([False, False])
    in_reward = GRPOLoss(beta=0.1, kl_in_reward=True, kl_estimator="k1")
    assert in_reward.reward_penalty(rollout).tolist() == pytest.approx([0.1 * 0.5, 0.1 * 0.5])
    out = in_reward(rollout.old_logprobs, rollout.old_logprobs, rollout.ref_logprobs, torch.zeros(2), torch.ones(2, 2))
    assert out.loss.item() == 0.0 and out.metrics["kl"] == pytest.approx(0.25)
    assert GRPOLoss(beta=0.1).reward_penalty(rollout).tolist() == [0.0, 0.0]


def test_mask_truncated_drops_cut_completions_from_the_loss():
    rollout = make_rollout([False, True])
    assert GRPOLoss(mask_truncated=True).token_mask(rollout).tolist() == [[1, 1], [0, 0]]
    assert GRPOLoss().token_mask(rollout).tolist() == [[1, 1], [1, 1]]


def test_gspo_clips_one_sequence_level_ratio_per_completion_by_hand():
    """GSPO (Zheng et al. 2025, eq. 5-7): s_i = (Π_t ρ_it)^(1/|o_i|), clipped as a whole."""
    ratios = torch.tensor([[1.1, 0.9, 1.15], [0.5, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the second completion has 2 tokens
    logprobs = torch.log(ratios).requires_grad_(True)
    advantages = torch.tensor([1.0, -1.0])
    out = GRPOLoss(eps=0.2, beta=0.0, importance_sampling_level="sequence")(logprobs, torch.zeros(2, 3), None,
                                                                            advantages, mask)
    s1, s2 = (1.1 * 0.9 * 1.15) ** (1 / 3), (0.5 * 1.0) ** (1 / 2)  # 1.0442..., 0.7071...
    # Completion 1: A > 0, s1 inside [0.8, 1.2]: -s1. Completion 2: A < 0, s2 < 0.8: clipped, -(-0.8) = 0.8.
    assert 0.8 <= s1 <= 1.2 and s2 < 0.8
    assert out.loss.item() == pytest.approx((-s1 + 0.8) / 2, abs=1e-6)
    assert out.metrics["ratio"] == pytest.approx((3 * s1 + 2 * s2) / 5, abs=1e-6)  # the sequence ratio, per token
    assert out.metrics["clip_frac_low"] == pytest.approx(2 / 5) and out.metrics["clip_frac_high"] == 0.0
    out.loss.backward()
    # d(-s1/2)/d log ρ_1t = -s1 / (2 · 3) on each token of completion 1 alike; completion 2 is clipped: 0.
    assert logprobs.grad[0].tolist() == pytest.approx([-s1 / 6] * 3, abs=1e-6)
    assert logprobs.grad[1].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    # Token level instead: each token's own ratio, so the gradients differ token by token.
    token_grad = torch.log(ratios).requires_grad_(True)
    GRPOLoss(eps=0.2, beta=0.0)(token_grad, torch.zeros(2, 3), None, advantages, mask).loss.backward()
    assert token_grad.grad[0].tolist() == pytest.approx([-1.1 / 6, -0.9 / 6, -1.15 / 6], abs=1e-6)


def test_gspo_and_grpo_agree_on_policy():
    """At ρ = 1 (one optimizer step per rollout) the sequence and token ratios are both 1: same loss and gradient."""
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -0.7]])
    mask, advantages = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]), torch.tensor([0.7, -0.7])
    grads = []
    for level in ("token", "sequence"):
        x = logprobs.clone().requires_grad_(True)
        GRPOLoss(beta=0.0, importance_sampling_level=level)(x, logprobs, None, advantages, mask).loss.backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-7)


def test_cispo_caps_the_weight_but_keeps_every_tokens_gradient_by_hand():
    """CISPO (MiniMax-M1 eq. 4): L = -1/Σ|o| Σ sg(clip(ρ, 1-ε_low, 1+ε_high)) A log π, no floor by default."""
    from r1lab.rl.losses import CISPOLoss

    logprobs = torch.log(torch.tensor([[1.5, 0.5, 1.0]])).requires_grad_(True)
    out = CISPOLoss(eps_high=0.28, beta=0.0)(logprobs, torch.zeros(1, 3), None, torch.tensor([2.0]), torch.ones(1, 3))
    weights = [1.28, 0.5, 1.0]  # 1.5 capped at 1.28; 0.5 kept (no lower bound)
    expected = -sum(w * 2.0 * math.log(r) for w, r in zip(weights, [1.5, 0.5, 1.0])) / 3
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    out.loss.backward()
    assert logprobs.grad[0].tolist() == pytest.approx([-w * 2.0 / 3 for w in weights], abs=1e-6)
    assert out.metrics["clip_frac_high"] == pytest.approx(1 / 3) and out.metrics["clip_frac_low"] == 0.0
    # PPO's clip gives the same capped token no gradient at all.
    ppo = torch.log(torch.tensor([[1.5, 0.5, 1.0]])).requires_grad_(True)
    DAPOLoss(eps=0.28, beta=0.0)(ppo, torch.zeros(1, 3), None, torch.tensor([2.0]), torch.ones(1, 3)).loss.backward()
    assert ppo.grad[0, 0].item() == 0.0


@pytest.mark.parametrize(("loss", "kwargs", "message"), [
    ("grpo", {"importance_sampling_level": "group"}, "importance_sampling_level must be one of token, sequence"),
    ("cispo", {"eps_high": 0.0}, r"loss.eps_high must be > 0"),
    ("cispo", {"eps_low": 1.5}, r"loss.eps_low must be in \(0, 1\] .* or null"),
])
def test_bad_gspo_and_cispo_options_are_errors(loss, kwargs, message):
    from r1lab.rl.losses import CISPOLoss

    with pytest.raises(ValueError, match=message):
        (GRPOLoss if loss == "grpo" else CISPOLoss)(**kwargs)


def test_the_gspo_and_cispo_options_compose_with_the_papers_settings():
    from hydra.utils import instantiate

    from r1lab.rl.losses import CISPOLoss, GSPOLoss
    from r1lab.testing import compose_config

    gspo = instantiate(compose_config(["loss=gspo"]).loss)
    assert isinstance(gspo, GSPOLoss) and gspo.importance_sampling_level == "sequence"
    assert (gspo.eps_low, gspo.eps_high, gspo.beta) == (3e-4, 4e-4, 0.0) and not gspo.needs_reference
    cispo = instantiate(compose_config(["loss=cispo"]).loss)
    assert isinstance(cispo, CISPOLoss) and (cispo.eps_low, cispo.eps_high) == (1.0, 0.28)  # no floor
