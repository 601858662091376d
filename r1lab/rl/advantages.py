"""Advantage estimators: `estimator(rollout) -> Tensor` of per-completion advantages.

Parameters go to `__init__` (from conf/advantage/<name>.yaml); data comes in the call, so the step never
branches on the estimator's name.
"""

from __future__ import annotations

from torch import Tensor

from r1lab.registry import ADVANTAGES
from r1lab.rl.rollout import Rollout


class AdvantageEstimator:
    """Base class: turns a scored rollout into advantages."""

    def __call__(self, rollout: Rollout) -> Tensor:
        raise NotImplementedError


def require_rewards(rollout: Rollout) -> Tensor:
    if rollout.rewards is None:
        raise ValueError("the rollout has no rewards yet: score it before estimating advantages")
    return rollout.rewards


@ADVANTAGES.register("grpo")
class GRPOAdvantage(AdvantageEstimator):
    """GRPO group-normalised reward: A_i = (r_i - mean(r_group)) / (std(r_group) + eps).

    DeepSeekMath (Shao et al., 2024), eq. for outcome supervision. The std is the population std of the
    group (rewards [1.1, 0.1, 1.1, 0.1] → std 0.5). A group whose rewards are all equal gets zero advantages.
    """

    def __init__(self, eps: float = 1e-4):
        if eps < 0:
            raise ValueError(f"advantage.eps must be >= 0, got {eps}")
        self.eps = eps

    def __call__(self, rollout: Rollout) -> Tensor:
        rewards = rollout.grouped(require_rewards(rollout)).float()
        centered = rewards - rewards.mean(dim=1, keepdim=True)
        std = rewards.std(dim=1, unbiased=False, keepdim=True)
        # All-equal groups: centered is exactly 0, keep it 0 even when eps == 0.
        advantages = centered / (std + self.eps).clamp_min(1e-12)
        return advantages.masked_fill(std == 0, 0.0).reshape(-1)
