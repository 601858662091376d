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
    """Base class: turns a scored rollout into advantages.

    The contract, for estimators of your own (register with `@ADVANTAGES.register("name")`, options go to
    `__init__` from `conf/advantage/<name>.yaml`):
    - `rollout.rewards` is a float32 tensor of shape (N,) on the training device, N = num_groups × group_size
      rows in prompt-major order (`rollout.grouped(rewards)` gives (B, G)). It is the weighted sum of the reward
      terms (a term's None counts 0) minus β Σ KL when `loss.kl_in_reward`. It is finite unless a term returned
      nan/inf, and then the step is skipped whatever the advantages are.
    - Return a float tensor of shape (N,) (one advantage per completion, applied to each of its tokens) or (N, C)
      (per token, C = `rollout.completion_mask.shape[1]`), on the rewards' device, finite wherever the rewards
      are. `checked_advantages` enforces this with a message naming the estimator.
    - Runs under `torch.no_grad()`; may read anything on the rollout (`columns`, `completion_mask`,
      `ref_logprobs`, ...) but should not change it.
    """

    def __call__(self, rollout: Rollout) -> Tensor:
        raise NotImplementedError


def checked_advantages(estimator, rollout: Rollout) -> Tensor:
    """`estimator(rollout)`, refused with a message that names the estimator when it breaks the contract above."""
    advantages = estimator(rollout)
    name = type(estimator).__name__
    rows, tokens = rollout.completion_mask.shape
    if not isinstance(advantages, Tensor):
        raise ValueError(f"advantage estimator {name} returned {type(advantages).__name__}; it must return a tensor "
                         f"of shape ({rows},) or ({rows}, {tokens})")
    if tuple(advantages.shape) not in ((rows,), (rows, tokens)):
        raise ValueError(f"advantage estimator {name} returned shape {tuple(advantages.shape)}; it must be ({rows},) "
                         f"(one per completion) or ({rows}, {tokens}) (one per completion token)")
    if not advantages.is_floating_point():
        advantages = advantages.float()
    rewards_finite = torch.isfinite(rollout.rewards) if rollout.rewards is not None else None
    if rewards_finite is not None and bool(rewards_finite.all()):
        if not bool(torch.isfinite(advantages).all()):
            raise ValueError(f"advantage estimator {name} returned nan or inf for finite rewards "
                             f"(e.g. a division by a zero std: an all-equal group needs its own case)")
    return advantages.to(rollout.rewards.device if rollout.rewards is not None else advantages.device)


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
