import math

import pytest
import torch

from r1lab.rl.losses import GRPOLoss, kl_k3


def test_k3_is_exp_r_minus_r_minus_one():
    logprobs = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    r = ref - logprobs  # [-0.5, 1.0]
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
