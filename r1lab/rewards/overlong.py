"""DAPO's soft overlong punishment: a length-aware penalty near the generation budget."""

from __future__ import annotations

from typing import Any

from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward


@REWARDS.register("overlong")
class OverlongPenalty(Reward):
    """0 up to max_tokens - cache_tokens, then falls linearly to -1 at max_tokens, -1 beyond (DAPO eq. 13).

    Lengths are token counts, from the `completion_ids` column the step passes to every reward (as TRL does).
    """

    def __init__(self, max_tokens: int = 256, cache_tokens: int = 64):
        if not 0 < cache_tokens <= max_tokens:
            raise ValueError(f"reward.overlong needs 0 < cache_tokens <= max_tokens, got {cache_tokens}, {max_tokens}")
        self.max_tokens, self.cache_tokens = int(max_tokens), int(cache_tokens)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        if "completion_ids" not in columns:
            raise KeyError("reward.overlong needs the completion_ids column (token ids of each completion)")
        soft_start = self.max_tokens - self.cache_tokens
        scores: list[float | None] = []
        for ids in columns["completion_ids"]:
            length = len(ids)
            if length <= soft_start:
                scores.append(0.0)
            elif length <= self.max_tokens:
                scores.append((soft_start - length) / self.cache_tokens)
            else:
                scores.append(-1.0)
        return scores
