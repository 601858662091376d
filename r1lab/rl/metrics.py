"""Metrics of one rollout: what the step logs besides the loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from r1lab.judging.answers import extract_answer
from r1lab.rollout import Rollout, ScoredRollout
from r1lab.judging.selfcheck import self_verify_rate


def zero_std_fraction(rollout: Rollout) -> float:
    """Share of groups whose rewards are all equal: they carry no GRPO learning signal."""
    grouped = rollout.grouped(rollout.rewards)
    return (grouped.max(dim=1).values == grouped.min(dim=1).values).float().mean().item()


def accuracy_by_difficulty(rollout: Rollout, accuracy: torch.Tensor, hard_difficulty: Any) -> dict[str, float]:
    """`train/accuracy_d<k>` per difficulty label in the batch, and `train/accuracy_hard` for the task's hardest."""
    difficulty = rollout.columns.get("difficulty")
    if difficulty is None:
        return {}
    metrics = mean_by_difficulty(accuracy.float().tolist(), difficulty, "train/accuracy_d")
    if hard_difficulty is not None and hard_difficulty in difficulty:
        metrics["train/accuracy_hard"] = metrics[f"train/accuracy_d{hard_difficulty}"]
    return metrics


def mean_by_difficulty(values: Sequence[float], difficulty: Sequence[Any], prefix: str) -> dict[str, float]:
    """`<prefix><k>`: the mean of `values` over the rows labelled difficulty k (unlabelled rows skipped)."""
    metrics = {}
    for level in sorted({d for d in difficulty if d is not None}, key=str):
        picked = [v for v, d in zip(values, difficulty) if d == level]
        metrics[f"{prefix}{level}"] = sum(picked) / len(picked)
    return metrics


def generated_tokens(rollout: Rollout) -> torch.Tensor:
    """(N,) tokens the sampler generated for each row: its completion, or its share of a search's cost."""
    return rollout.generated_tokens if rollout.generated_tokens is not None else rollout.completion_lengths


def generation_cost(rollout: Rollout, accuracy: torch.Tensor) -> dict[str, float]:
    """Tokens the sampler generated per completion and per correct completion (search costs more)."""
    total = float(generated_tokens(rollout).sum())
    metrics = {"perf/tokens_per_completion": total / rollout.num_completions}
    correct = float(accuracy.nan_to_num(0.0).sum())
    if correct > 0:
        metrics["perf/tokens_per_correct"] = total / correct
    return metrics


def rollout_metrics(rollout: Rollout, scored: ScoredRollout, hard_difficulty: Any = None,
                    answer_format: str = "auto") -> dict[str, float]:
    accuracy = scored.correct  # the task's verdict, whatever the reward terms are
    lengths = rollout.completion_lengths.float()
    metrics = {
        "train/reward": scored.total.mean().item(),
        "train/reward_std": scored.total.std(unbiased=False).item(),
        "train/accuracy": accuracy.float().mean().item(),
        "train/completion_len": lengths.mean().item(),
        "train/completion_len_max": lengths.max().item(),
        "train/truncated_frac": rollout.truncated.float().mean().item(),
        "train/no_answer_frac": sum(extract_answer(c, answer_format) is None for c in rollout.completions)
        / len(rollout.completions),
        "train/zero_std_frac": zero_std_fraction(rollout),
        "train/nonfinite_rewards": float(scored.nonfinite),
        "aha/self_verify_rate": self_verify_rate(rollout.completions),
    }
    metrics |= accuracy_by_difficulty(rollout, accuracy, hard_difficulty)
    metrics |= generation_cost(rollout, accuracy)
    for name, wanted in (("correct", 1.0), ("wrong", 0.0)):  # Dr. GRPO's claim is about wrong answers' length
        picked = lengths[accuracy.float() == wanted]
        if len(picked):
            metrics[f"train/completion_len_{name}"] = picked.mean().item()
    for name, values in scored.terms.items():
        applicable = values[~values.isnan()]
        metrics[f"train/reward/{name}"] = applicable.mean().item() if len(applicable) else float("nan")
        if scored.failures.get(name):
            metrics[f"train/reward_failures/{name}"] = float(scored.failures[name])
    return metrics
