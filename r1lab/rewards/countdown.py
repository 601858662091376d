"""TinyZero's Countdown reward: full credit for a right equation, a little for one that is there but wrong."""

from __future__ import annotations

import math
from typing import Any

from r1lab.judging.answers import extract_answer
from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward


@REWARDS.register("countdown")
class CountdownReward(Reward):
    """`score` (1.0) when the task says the equation is right (the column `correct`: each number once, equals
    the target); `format_score` (0.1) when the completion gives an <answer> that is wrong; 0 without one.
    TinyZero's `compute_score` with its defaults."""

    def __init__(self, score: float = 1.0, format_score: float = 0.1):
        self.score, self.format_score = float(score), float(format_score)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        if "correct" not in columns:
            raise KeyError("the countdown reward scores the task's verdict (the column `correct`, which the RL step "
                           "computes with task=countdown); use it with that task")
        out: list[float | None] = []
        for completion, correct in zip(completions, map(float, columns["correct"])):
            if math.isnan(correct):
                out.append(None)
            elif correct == 1.0:
                out.append(self.score)
            else:
                out.append(self.format_score if extract_answer(completion) is not None else 0.0)
        return out
