"""Rule-based correctness: the R1-Zero accuracy reward."""

from __future__ import annotations

from typing import Any

from r1lab.registry import REWARDS
from r1lab.rewards.answers import answers_match, extract_answer
from r1lab.rewards.base import Reward


@REWARDS.register("accuracy")
class AccuracyReward(Reward):
    """1.0 when the final answer (<answer>…</answer> or last \\boxed{}) equals the gold answer under math-verify, else 0.0."""

    def __init__(self, answer_column: str = "answer"):
        self.answer_column = answer_column

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        if self.answer_column not in columns:
            raise KeyError(f"the accuracy reward needs the task column {self.answer_column!r}; "
                           f"the task provides {sorted(columns)} (set reward.accuracy.answer_column)")
        scores: list[float | None] = []
        for completion, gold in zip(completions, columns[self.answer_column]):
            predicted = extract_answer(completion)
            scores.append(float(predicted is not None and answers_match(str(gold), predicted)))
        return scores
