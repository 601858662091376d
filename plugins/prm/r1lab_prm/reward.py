"""A process reward model as a reward term: split the chain of thought, score each step, aggregate."""

from __future__ import annotations

import math
from typing import Any

from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward
from r1lab_prm.scorer import PRMScorer
from r1lab_prm.steps import STYLES, split_steps

AGGREGATES = {
    "min": min,
    "mean": lambda s: sum(s) / len(s),
    "last": lambda s: s[-1],
    "product": math.prod,
}


def aggregate(step_scores: list[float], how: str) -> float | None:
    """One number per completion from its step scores (None for a completion with no steps)."""
    return AGGREGATES[how](step_scores) if step_scores else None


@REWARDS.register("prm")
class PRMReward(Reward):
    """The PRM's step scores, aggregated by `min` (a chain is as good as its worst step), `mean`, `last` or
    `product`. Logs `prm/steps_per_completion` and `prm/score`: the numbers that expose reward hacking."""

    def __init__(self, scorer: str, aggregate: str = "min", steps: str = "lines", separator: str = "\n",
                 no_steps_score: float | None = 0.0, trust_remote_code: bool = False, batch_size: int = 64):
        if aggregate not in AGGREGATES:
            raise ValueError(f"reward.prm.aggregate={aggregate!r} is unknown; choose one of {', '.join(AGGREGATES)}")
        if steps not in STYLES:
            raise ValueError(f"reward.prm.steps={steps!r} is unknown; choose one of {', '.join(STYLES)}")
        self.how, self.style, self.no_steps_score = aggregate, steps, no_steps_score
        self.scorer = PRMScorer(scorer, separator, batch_size, trust_remote_code)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        steps = [split_steps(c, self.style) for c in completions]
        scores = self.scorer.score(prompts, steps)
        return [aggregate(s, self.how) if s else self.no_steps_score for s in scores]

    def metrics(self, values: list[float], completions: list[str], **columns: Any) -> dict[str, float]:
        counts = [len(split_steps(c, self.style)) for c in completions]
        scored = [v for v in values if not math.isnan(v)]
        return {"prm/steps_per_completion": sum(counts) / max(len(counts), 1),
                "prm/score": sum(scored) / len(scored) if scored else float("nan")}
