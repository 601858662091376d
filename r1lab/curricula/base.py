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


NOT_SET_UP = ("is set by setup(rows, batch_size), which the run calls after the constructor: a curriculum's "
              "__init__ takes only its own options and seed; read self.rows and self.batch_size in setup() "
              "(call super().setup first) or in batch_at()")


def build_curriculum(options: Any) -> Curriculum:
    """The curriculum of `options` (the `curriculum` config), with the contract in the message when its constructor
    does not take what the option file gives (e.g. a `rows` or `batch_size` argument: those come to `setup`)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        curriculum = instantiate(options)
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, TypeError):
            raise
        raise ValueError(f"curriculum {options.get('_target_')} could not be built from its option file: "
                         f"{exc.__cause__}. A curriculum's __init__ takes its option file's keys (and seed: ${{seed}}) "
                         "only; the task's rows and the prompts per step arrive afterwards through "
                         "setup(rows, batch_size)") from exc
    if not isinstance(curriculum, Curriculum):
        raise ValueError(f"curriculum {options.get('_target_')} built a {type(curriculum).__name__}; a curriculum "
                         "subclasses r1lab.curricula.base.Curriculum")
    return curriculum


class Curriculum(Sampler[list[int]]):
    """Base class of curricula. The life of one, in the order the run calls it:

    1. `__init__(**options, seed)`: the option file's keys (`conf/curriculum/<name>.yaml`, with `seed: ${seed}`).
    2. `setup(rows, batch_size)`: the task's rows (dicts: `prompt`, `answer`, `difficulty`, ...) and the prompts
       per RL step; override it to index the rows (call `super().setup(rows, batch_size)` first).
    3. `batch_at(step) -> list[int]` (required): the `batch_size` task indices of RL step `step`, a pure function
       of the step and what `update` learned, so that a resumed run sees the same prompts.
    4. `update(indices, metrics)` after each trained step (call `super().update`: it advances `position`);
       `metrics(indices)` adds `curriculum/*` tags to the step's log.
    5. `extra_batch_at(step, draw)`: prompts for dynamic sampling's extra rounds (default: far-ahead steps of
       the curriculum's own stream); `state_dict()` / `load_state_dict()`: what a checkpoint keeps.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._rows: Sequence[dict[str, Any]] | None = None
        self._batch_size: int | None = None
        self.position = 0  # RL steps trained so far

    @property
    def rows(self) -> Sequence[dict[str, Any]]:
        if self._rows is None:
            raise AttributeError(f"{type(self).__name__}.rows {NOT_SET_UP}")
        return self._rows

    @rows.setter
    def rows(self, rows: Sequence[dict[str, Any]]) -> None:
        self._rows = rows

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            raise AttributeError(f"{type(self).__name__}.batch_size {NOT_SET_UP}")
        return self._batch_size

    @batch_size.setter
    def batch_size(self, batch_size: int) -> None:
        self._batch_size = batch_size

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
