"""Length-aware rewards: what the paper's critics use to keep reasoning from growing without bound."""

from __future__ import annotations

import math
from typing import Any

from r1lab.registry import REWARDS
from r1lab.rewards.accuracy import AccuracyReward
from r1lab.rewards.base import Reward
from r1lab.rewards.groups import completion_lengths, group_slices


@REWARDS.register("length_penalty")
class GroupLengthPenalty(Reward):
    """Kimi k1.5's length reward, within each prompt's group of completions:

        λ = 0.5 − (len − min_len) / (max_len − min_len);   correct: λ,   wrong: min(0, λ)

    so the shortest correct answers gain +0.5 and long ones lose up to 0.5; wrong answers are never rewarded
    for being short. When every completion of a group has the same length, λ = 0.
    """

    def __init__(self, answer_column: str | None = None):
        self.accuracy = AccuracyReward(answer_column)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        correct = self.accuracy(prompts, completions, **columns)
        lengths = completion_lengths(completions, columns)
        scores: list[float | None] = [None] * len(completions)
        for rows in group_slices(prompts, columns):
            shortest, longest = min(lengths[i] for i in rows), max(lengths[i] for i in rows)
            for i in rows:
                λ = 0.0 if longest == shortest else 0.5 - (lengths[i] - shortest) / (longest - shortest)
                scores[i] = λ if correct[i] else min(0.0, λ)
        return scores


@REWARDS.register("cosine_length")
class CosineLengthReward(Reward):
    """The cosine length-scaled correctness reward (Yeo et al. 2025, "Demystifying Long Chain-of-Thought"):

        r(t) = r_L + ½ (r_0 − r_L)(1 + cos(π t / T))   for a completion of t ≤ T tokens,

    with separate ends for correct (r_0 = correct_short, r_L = correct_long: short correct answers earn
    most) and wrong answers (wrong_short, wrong_long: a short wrong answer is punished hardest, so the
    model keeps thinking when unsure); completions cut at the budget T get `exceed_penalty`.
    """

    def __init__(self, max_tokens: int = 256, correct_short: float = 1.0, correct_long: float = 0.5,
                 wrong_short: float = -1.0, wrong_long: float = 0.0, exceed_penalty: float = -1.0,
                 answer_column: str | None = None):
        if max_tokens < 1:
            raise ValueError(f"reward.cosine_length.max_tokens must be >= 1, got {max_tokens}")
        self.max_tokens = int(max_tokens)
        self.correct = (float(correct_short), float(correct_long))
        self.wrong = (float(wrong_short), float(wrong_long))
        self.exceed_penalty = float(exceed_penalty)
        self.accuracy = AccuracyReward(answer_column)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        correct = self.accuracy(prompts, completions, **columns)
        scores: list[float | None] = []
        for length, right in zip(completion_lengths(completions, columns), correct):
            if length >= self.max_tokens:
                scores.append(self.exceed_penalty)
                continue
            short, long = self.correct if right else self.wrong
            scores.append(long + 0.5 * (short - long) * (1 + math.cos(math.pi * length / self.max_tokens)))
        return scores
