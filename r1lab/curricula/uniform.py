from __future__ import annotations

from functools import lru_cache

import torch

from r1lab.curricula.base import Curriculum
from r1lab.registry import CURRICULA


@lru_cache(maxsize=4)
def shuffled_order(seed: int, size: int, epoch: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(size, generator=generator).tolist())


@CURRICULA.register("uniform")
class UniformCurriculum(Curriculum):
    """Every prompt once per epoch in a seeded shuffled order; epochs follow each other without end."""

    def batch_at(self, step: int) -> list[int]:
        n = len(self.rows)
        positions = range(step * self.batch_size, (step + 1) * self.batch_size)
        return [shuffled_order(self.seed, n, p // n)[p % n] for p in positions]
