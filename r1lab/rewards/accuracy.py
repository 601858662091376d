"""Rule-based correctness: the R1-Zero accuracy reward."""

from __future__ import annotations

import math
from typing import Any

from r1lab.judging.answers import is_correct
from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward


@REWARDS.register("accuracy")
class AccuracyReward(Reward):
    """1.0 when the final answer (<answer>…</answer> or last \\boxed{}) equals the gold answer under math-verify, else 0.0.

    `answer_column=None` (the default) scores the task's own verdict, which the RL step computes once per
    completion and passes as the column `correct`; where that column is absent (the reward used on its own,
    e.g. from TRL) it compares with the column `answer`. Naming a column compares with that column instead.
    """

    def __init__(self, answer_column: str | None = None):
        self.answer_column = answer_column

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        if self.answer_column is None and "correct" in columns:
            return [None if math.isnan(v) else float(v) for v in map(float, columns["correct"])]
        column = self.answer_column or "answer"
        if column not in columns:
            raise KeyError(f"the accuracy reward needs the task column {column!r}; "
                           f"the task provides {sorted(columns)} (set reward.accuracy.answer_column)")
        return [float(is_correct(completion, gold)) for completion, gold in zip(completions, columns[column])]
