"""Metrics of one rollout: what the step logs besides the loss."""

from __future__ import annotations

import torch

from r1lab.rewards.answers import extract_answer
from r1lab.rewards.base import ScoredRollout
from r1lab.rl.rollout import Rollout


def zero_std_fraction(rollout: Rollout) -> float:
    """Share of groups whose rewards are all equal: they carry no GRPO learning signal."""
    grouped = rollout.grouped(rollout.rewards)
    return (grouped.max(dim=1).values == grouped.min(dim=1).values).float().mean().item()


def rollout_metrics(rollout: Rollout, scored: ScoredRollout, accuracy: torch.Tensor) -> dict[str, float]:
    lengths = rollout.completion_lengths.float()
    metrics = {
        "train/reward": scored.total.mean().item(),
        "train/reward_std": scored.total.std(unbiased=False).item(),
        "train/accuracy": accuracy.float().mean().item(),
        "train/completion_len": lengths.mean().item(),
        "train/completion_len_max": lengths.max().item(),
        "train/truncated_frac": rollout.truncated.float().mean().item(),
        "train/no_answer_frac": sum(extract_answer(c) is None for c in rollout.completions) / len(rollout.completions),
        "train/zero_std_frac": zero_std_fraction(rollout),
        "train/nonfinite_rewards": float(scored.nonfinite),
    }
    for name, values in scored.terms.items():
        applicable = values[~values.isnan()]
        metrics[f"train/reward/{name}"] = applicable.mean().item() if len(applicable) else float("nan")
        if scored.failures.get(name):
            metrics[f"train/reward_failures/{name}"] = float(scored.failures[name])
    return metrics
