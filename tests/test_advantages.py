import pytest
import torch

from r1lab.rl.advantages import AdvantageEstimator, GRPOAdvantage, checked_advantages
from r1lab.rollout import Rollout


def scored_rollout(rewards: list[float], group_size: int) -> Rollout:
    n = len(rewards)
    return Rollout(prompts=["p"] * n, completions=["c"] * n, group_size=group_size,
                   input_ids=torch.zeros(n, 3, dtype=torch.long), attention_mask=torch.ones(n, 3),
                   completion_mask=torch.ones(n, 2), truncated=torch.zeros(n, dtype=torch.bool),
                   rewards=torch.tensor(rewards))


def test_grpo_matches_the_worked_example():
    # accuracy 1 + format 0.1 → [1.1, 0.1, 1.1, 0.1]: mean 0.6, population std 0.5, advantages ±1.
    advantages = GRPOAdvantage(eps=0.0)(scored_rollout([1.1, 0.1, 1.1, 0.1], 4))
    assert advantages.tolist() == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-6)
    with_eps = GRPOAdvantage(eps=1e-4)(scored_rollout([1.1, 0.1, 1.1, 0.1], 4))
    assert with_eps.tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001] * 2, abs=1e-6)


def test_groups_are_normalised_separately():
    # group 1: [0, 1, 2] mean 1 std sqrt(2/3); group 2 scaled by 10 gives the same advantages.
    advantages = GRPOAdvantage(eps=0.0)(scored_rollout([0, 1, 2, 0, 10, 20], 3))
    std = (2 / 3) ** 0.5
    assert advantages.tolist() == pytest.approx([-1 / std, 0, 1 / std] * 2, abs=1e-5)


@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_all_equal_groups_give_zero_advantages_without_nan(eps):
    advantages = GRPOAdvantage(eps=eps)(scored_rollout([1.0, 1.0, 0.0, 0.0, 0.5, 1.5], 2))
    assert torch.isfinite(advantages).all()
    assert advantages.tolist() == pytest.approx([0, 0, 0, 0, -0.5 / (0.5 + eps), 0.5 / (0.5 + eps)], abs=1e-6)


def test_negative_eps_is_rejected():
    with pytest.raises(ValueError, match="advantage.eps"):
        GRPOAdvantage(eps=-1.0)


def test_dr_grpo_centres_without_dividing_by_the_std():
    from r1lab.rl.advantages import DrGRPOAdvantage

    assert DrGRPOAdvantage()(scored_rollout([1.1, 0.1, 1.1, 0.1], 4)).tolist() == pytest.approx([0.5, -0.5, 0.5, -0.5])
    assert DrGRPOAdvantage()(scored_rollout([1, 1, 0, 3], 2)).tolist() == pytest.approx([0, 0, -1.5, 1.5])


def test_rloo_uses_the_mean_of_the_other_completions():
    from r1lab.rl.advantages import RLOOAdvantage

    # [1, 0, 0, 2]: baselines (0+0+2)/3, (1+0+2)/3, (1+0+2)/3, (1+0+0)/3
    advantages = RLOOAdvantage()(scored_rollout([1, 0, 0, 2], 4))
    assert advantages.tolist() == pytest.approx([1 - 2 / 3, -1, -1, 2 - 1 / 3])
    # Equals G/(G-1) times the mean-centred reward.
    assert advantages.tolist() == pytest.approx([4 / 3 * (r - 0.75) for r in [1, 0, 0, 2]])
    assert RLOOAdvantage()(scored_rollout([5, 5], 2)).tolist() == [0, 0]


def test_rloo_refuses_a_group_of_one():
    from r1lab.rl.advantages import RLOOAdvantage

    with pytest.raises(ValueError, match="rloo needs sampler.group_size >= 2"):
        RLOOAdvantage()(scored_rollout([1.0, 0.0], 1))


def test_reinforce_pp_normalises_over_the_whole_batch():
    from r1lab.rl.advantages import ReinforcePlusPlusAdvantage

    # Batch [1, 1, 0, 0] (two all-equal groups): mean 0.5, std 0.5 → ±1, unlike GRPO's zeros.
    advantages = ReinforcePlusPlusAdvantage(eps=0.0)(scored_rollout([1, 1, 0, 0], 2))
    assert advantages.tolist() == pytest.approx([1, 1, -1, -1])
    assert GRPOAdvantage()(scored_rollout([1, 1, 0, 0], 2)).tolist() == [0, 0, 0, 0]
    assert ReinforcePlusPlusAdvantage()(scored_rollout([2, 2, 2, 2], 2)).tolist() == [0, 0, 0, 0]


def test_an_estimator_breaking_the_contract_is_named_with_what_it_must_return():
    rollout = scored_rollout([1.0, 0.0, 1.0, 0.0], 2)

    class WrongShape(AdvantageEstimator):
        def __call__(self, rollout):
            return rollout.grouped(rollout.rewards)  # (B, G): forgot reshape(-1)

    class DividesByZero(AdvantageEstimator):
        def __call__(self, rollout):
            rewards = rollout.grouped(rollout.rewards)
            return ((rewards - rewards.mean(1, keepdim=True)) / rewards.new_zeros(2, 1)).reshape(-1)

    with pytest.raises(ValueError, match=r"WrongShape returned shape \(2, 2\); it must be \(4,\).*or \(4, 2\)"):
        checked_advantages(WrongShape(), rollout)
    with pytest.raises(ValueError, match="DividesByZero returned nan or inf for finite rewards"):
        checked_advantages(DividesByZero(), rollout)
    with pytest.raises(ValueError, match="returned list"):
        checked_advantages(lambda r: [0.0] * 4, rollout)
    per_token = checked_advantages(lambda r: torch.ones(4, 2, dtype=torch.int64), rollout)
    assert per_token.dtype == torch.float32 and per_token.shape == (4, 2)
    assert checked_advantages(GRPOAdvantage(), rollout).shape == (4,)
