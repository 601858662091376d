"""DeepSeek-R1's language-consistency reward: the share of the chain of thought in the target language."""

from __future__ import annotations

import math
from typing import Any

from r1lab.judging.language import languages_in, make_identifier
from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward


@REWARDS.register("language_consistency")
class LanguageConsistencyReward(Reward):
    """Target-language words / all words with a language, in the chain of thought (1.0 when it has none).

    R1 adds this to the accuracy reward in its second RL stage to stop language mixing, at a small cost in
    accuracy. Logs `lang/consistency` (mean share) and `lang/mixed_rate` (share of completions that mix
    the target with another language).
    """

    def __init__(self, target: str = "en", identifier: str = "natural"):
        self.identifier = make_identifier(identifier)
        self.target = self.identifier.check(target)

    def share(self, completion: str) -> float:
        counts = languages_in(completion, self.identifier)
        total = sum(counts.values())
        return counts[self.target] / total if total else 1.0

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        return [self.share(c) for c in completions]

    def metrics(self, values: list[float], completions: list[str], **columns: Any) -> dict[str, float]:
        shares = [v for v in values if not math.isnan(v)]
        if not shares:
            return {}
        return {"lang/consistency": sum(shares) / len(shares),
                "lang/mixed_rate": sum(0.0 < v < 1.0 for v in shares) / len(shares)}
