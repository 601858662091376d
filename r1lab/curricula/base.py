"""Curricula: which prompts each RL step sees.

A curriculum is a batch sampler of prompt indices (the DataModule's `batch_sampler`) that never runs out,
learns from `update(indices, metrics)` after each step, and checkpoints its position with `state_dict()`.
The position counts steps that were trained, not batches that were fetched (Lightning fetches one ahead),
so a resumed run sees exactly the prompts the uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler


EXTRA_DRAW_OFFSET = 1_000_003  # steps between the main stream and each extra-draw stream


class Curriculum(Sampler[list[int]]):
    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.rows: Sequence[dict[str, Any]] = ()
        self.batch_size = 0
        self.position = 0  # RL steps trained so far

    def setup(self, rows: Sequence[dict[str, Any]], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"rl.prompts_per_step must be >= 1 (prompts per RL step, each sampled "
                             f"sampler.group_size times), got {batch_size}")
        if not rows:
            raise ValueError("the task has no prompts")
        self.rows, self.batch_size = rows, batch_size

    def batch_at(self, step: int) -> list[int]:
        """The prompt indices for RL step `step` (0-based)."""
        raise NotImplementedError

    def extra_batch_at(self, step: int, draw: int) -> list[int]:
        """Prompts for extra sampling rounds of `step` (dynamic sampling): by default far-ahead positions of the
        curriculum's own stream, so they follow its mixture and are the same when a run is resumed."""
        return self.batch_at(step + draw * EXTRA_DRAW_OFFSET)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.position
        while True:
            yield self.batch_at(step)
            step += 1

    def update(self, indices: list[int], metrics: dict[str, Any]) -> None:
        """Called after each trained step with its prompt indices and per-prompt metrics."""
        self.position += 1

    def metrics(self, indices: list[int]) -> dict[str, float]:
        """What the step logs about its prompts: `curriculum/mean_difficulty` for numeric difficulty labels."""
        labels = [self.rows[i].get("difficulty") for i in indices]
        if labels and all(isinstance(label, (int, float)) and not isinstance(label, bool) for label in labels):
            return {"curriculum/mean_difficulty": sum(labels) / len(labels)}
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
