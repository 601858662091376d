"""Advantage estimators: `estimator(rollout) -> Tensor` of per-completion advantages.

Parameters go to `__init__` (from conf/advantage/<name>.yaml); data comes in the call, so the step never
branches on the estimator's name.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r1lab.registry import ADVANTAGES
from r1lab.rollout import Rollout


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


@ADVANTAGES.register("dr_grpo")
class DrGRPOAdvantage(AdvantageEstimator):
    """Dr. GRPO: A_i = r_i - mean(r_group), without dividing by the group std.

    "Understanding R1-Zero-Like Training: A Critical Perspective" (Liu et al., 2025): the std term weights
    questions by how (in)consistent their rewards are, a difficulty bias; dropping it removes the bias.
    """

    def __call__(self, rollout: Rollout) -> Tensor:
        rewards = rollout.grouped(require_rewards(rollout)).float()
        return (rewards - rewards.mean(dim=1, keepdim=True)).reshape(-1)


@ADVANTAGES.register("rloo")
class RLOOAdvantage(AdvantageEstimator):
    """RLOO: A_i = r_i - mean_{j != i} r_j, the leave-one-out baseline (= G/(G-1) · (r_i - mean)).

    "Buy 4 REINFORCE Samples, Get a Baseline for Free!" (Kool et al., 2019); Ahmadian et al., 2024.
    """

    def __call__(self, rollout: Rollout) -> Tensor:
        if rollout.group_size < 2:
            raise ValueError(f"advantage=rloo needs sampler.group_size >= 2 (the baseline of each completion is "
                             f"the mean of the others in its group), got {rollout.group_size}")
        rewards = rollout.grouped(require_rewards(rollout)).float()
        others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (rollout.group_size - 1)
        return (rewards - others_mean).reshape(-1)


@ADVANTAGES.register("reinforce_pp")
class ReinforcePlusPlusAdvantage(AdvantageEstimator):
    """REINFORCE++: A_i = (r_i - mean(r_batch)) / (std(r_batch) + eps), normalised over the whole batch.

    "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models" (Hu, 2025): no critic and
    no per-prompt baseline; the KL penalty belongs in the reward (use loss.kl_in_reward=true).
    """

    def __init__(self, eps: float = 1e-8):
        if eps < 0:
            raise ValueError(f"advantage.eps must be >= 0, got {eps}")
        self.eps = eps

    def __call__(self, rollout: Rollout) -> Tensor:
        rewards = require_rewards(rollout).float()
        std = rewards.std(unbiased=False)
        if std == 0:
            return torch.zeros_like(rewards)
        return (rewards - rewards.mean()) / (std + self.eps)
