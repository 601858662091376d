"""An online curriculum: favour prompts the policy solves sometimes, the ones it can learn from.

A group whose completions all pass (or all fail) has zero GRPO advantage. This curriculum keeps each prompt's
pass rate from its recent rollouts (an exponential moving average) and draws most prompts from those in
`band` (pass rate within [low, high], or not seen yet), the rest uniformly (`explore`), so that prompts out
of the band are re-measured now and then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from r1lab.curricula.base import Curriculum
from r1lab.registry import CURRICULA


@CURRICULA.register("pass_rate")
class PassRateCurriculum(Curriculum):
    def __init__(self, band: Sequence[float] = (0.1, 0.9), explore: float = 0.2, smoothing: float = 0.5,
                 metric: str = "accuracy", seed: int = 0):
        super().__init__(seed)
        low, high = (float(v) for v in band)
        if not 0 <= low <= high <= 1:
            raise ValueError(f"curriculum.band must be [low, high] with 0 <= low <= high <= 1, got {list(band)}")
        if not 0 <= explore <= 1 or not 0 < smoothing <= 1:
            raise ValueError(f"curriculum.explore must be in [0, 1] and smoothing in (0, 1], got {explore}, {smoothing}")
        self.band, self.explore, self.smoothing, self.metric = (low, high), float(explore), float(smoothing), metric
        self.rates: dict[int, float] = {}  # after `position` updates
        self.previous: dict[int, float] = {}  # after `position - 1` updates

    def in_band(self, index: int, rates: dict[int, float]) -> bool:
        rate = rates.get(index)
        return rate is None or self.band[0] <= rate <= self.band[1]

    def rates_for(self, step: int) -> dict[int, float]:
        # Step k is drawn from the rates after k - 1 updates: Lightning fetches a batch one step ahead (when
        # k - 1 updates are done), and a resumed run fetches it after k; both must draw the same batch.
        return self.rates if self.position <= step - 1 else self.previous

    def batch_at(self, step: int) -> list[int]:
        rates = self.rates_for(step)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        candidates = [i for i in range(len(self.rows)) if self.in_band(i, rates)] or list(range(len(self.rows)))
        batch = []
        for _ in range(self.batch_size):
            pool = range(len(self.rows)) if float(torch.rand((), generator=generator)) < self.explore else candidates
            batch.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
        return batch

    def update(self, indices: list[int], metrics: dict[str, Any]) -> None:
        self.previous = dict(self.rates)
        for index, rate in zip(indices, metrics.get(self.metric, [])):
            if rate == rate:  # not NaN
                old = self.rates.get(index)
                self.rates[index] = rate if old is None else (1 - self.smoothing) * old + self.smoothing * rate
        super().update(indices, metrics)

    def metrics(self, indices: list[int]) -> dict[str, float]:
        band = self.band_fraction(indices)
        return super().metrics(indices) | ({} if band != band else {"curriculum/band_frac": band})

    def band_fraction(self, indices: list[int]) -> float:
        """Share of `indices` whose measured pass rate is in the band (unmeasured prompts do not count)."""
        measured = [i for i in indices if i in self.rates]
        return sum(self.in_band(i, self.rates) for i in measured) / len(measured) if measured else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rates": [[i, r] for i, r in self.rates.items()],
                "previous": [[i, r] for i, r in self.previous.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rates = {int(i): float(r) for i, r in state.get("rates", [])}
        self.previous = {int(i): float(r) for i, r in state.get("previous", [])}
