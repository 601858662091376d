"""Difficulty-driven curricula: a fixed mixture over difficulty labels, and a mixture that ramps over steps.

Both draw each step's prompts from a generator seeded by (seed, step), so a step's batch depends only on
the step: resuming needs nothing but the position. Weights are [label, weight] pairs (`[[2, 1.0], [5, 3.0]]`)
or a mapping; in configs use pairs: Hydra merges a mapping into the default instead of replacing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from r1lab.curricula.base import Curriculum
from r1lab.registry import CURRICULA


def _label_key(label: Any) -> str:
    return str(label)


class MixtureCurriculum(Curriculum):
    """Prompts drawn by difficulty label with `weights_at(step)`, uniformly within a label."""

    def setup(self, rows: Sequence[dict[str, Any]], batch_size: int) -> None:
        super().setup(rows, batch_size)
        if any("difficulty" not in row for row in rows):
            raise ValueError(f"curriculum {type(self).__name__} needs a difficulty column in the task's rows")
        self.by_label: dict[str, list[int]] = {}
        for index, row in enumerate(rows):
            self.by_label.setdefault(_label_key(row["difficulty"]), []).append(index)
        self.labels = sorted(self.by_label, key=_sort_key)

    def check_weights(self, weights: Mapping[Any, float] | Sequence[Sequence[Any]] | None, option: str
                      ) -> dict[str, float]:
        if weights is None:  # uniform over the task's labels
            return {label: 1.0 for label in self.labels}
        pairs = weights.items() if isinstance(weights, Mapping) else weights
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"curriculum.{option} must be [label, weight] pairs, e.g. [[2, 1.0], [5, 3.0]]; got {weights}")
        chosen = {_label_key(k): float(v) for k, v in pairs}
        unknown = sorted(set(chosen) - set(self.by_label), key=_sort_key)
        if unknown:
            raise ValueError(f"curriculum.{option} names difficulty labels {unknown} that the task does not have; "
                             f"its labels are {self.labels}")
        if any(v < 0 for v in chosen.values()) or sum(chosen.values()) <= 0:
            raise ValueError(f"curriculum.{option} must be non-negative with a positive sum, got {weights}")
        return chosen

    def weights_at(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def batch_at(self, step: int) -> list[int]:
        weights = self.weights_at(step)
        labels = [label for label in self.labels if weights.get(label, 0) > 0]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        probabilities = torch.tensor([weights[label] for label in labels])
        picks = torch.multinomial(probabilities, self.batch_size, replacement=True, generator=generator)
        batch = []
        for pick in picks.tolist():
            pool = self.by_label[labels[pick]]
            batch.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
        return batch


def _sort_key(label: str):
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


@CURRICULA.register("difficulty")
class DifficultyCurriculum(MixtureCurriculum):
    """A fixed mixture over difficulty labels, e.g. `curriculum.weights=[[2,1.0]]` (only the easiest sums);
    null: uniform over the labels."""

    def __init__(self, weights: Any = None, seed: int = 0):
        super().__init__(seed)
        self.raw_weights = weights

    def setup(self, rows: Sequence[dict[str, Any]], batch_size: int) -> None:
        super().setup(rows, batch_size)
        self.weights = self.check_weights(self.raw_weights, "weights")

    def weights_at(self, step: int) -> dict[str, float]:
        return self.weights


@CURRICULA.register("ramp")
class RampCurriculum(MixtureCurriculum):
    """A mixture that moves linearly from `start` to `end` weights over `ramp_steps` RL steps (easy → hard)."""

    def __init__(self, start: Any, end: Any, ramp_steps: int = 100, seed: int = 0):
        super().__init__(seed)
        if ramp_steps < 1:
            raise ValueError(f"curriculum.ramp_steps must be >= 1, got {ramp_steps}")
        self.raw_start, self.raw_end, self.ramp_steps = start, end, int(ramp_steps)

    def setup(self, rows: Sequence[dict[str, Any]], batch_size: int) -> None:
        super().setup(rows, batch_size)
        self.start, self.end = self.check_weights(self.raw_start, "start"), self.check_weights(self.raw_end, "end")

    def weights_at(self, step: int) -> dict[str, float]:
        t = min(step / self.ramp_steps, 1.0)
        total_start, total_end = sum(self.start.values()), sum(self.end.values())
        return {label: (1 - t) * self.start.get(label, 0.0) / total_start + t * self.end.get(label, 0.0) / total_end
                for label in self.labels}
