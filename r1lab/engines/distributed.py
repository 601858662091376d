"""What the RL step needs from torch.distributed, and nothing when it runs in one process.

Data parallelism in r1lab: every rank draws the same global batch of `rl.prompts_per_step` prompts from its
(identical) curriculum and samples its own contiguous share; rewards and advantages are per group, so they
stay local. Gradients are averaged by the strategy (DDP / FSDP / DeepSpeed). Metrics, callbacks and the
curriculum see the whole global batch (gathered), so every rank's curriculum stays identical and logged
numbers do not depend on the number of ranks.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch.distributed as dist

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (pickled; keep them small and on the CPU)."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def all_ranks_agree(flag: bool, require_all: bool = True) -> bool:
    """`flag` and'ed (require_all) or or'ed over ranks: decisions that change which collectives run (skip an
    update, draw more prompts) must be taken by every rank together or the ranks deadlock."""
    flags = gather_objects(bool(flag))
    return all(flags) if require_all else any(flags)


def local_share(n: int, rank: int, world: int) -> slice:
    """The contiguous part of `n` global items that `rank` handles (n must divide evenly)."""
    if n % world:
        raise ValueError(f"rl.prompts_per_step = {n} must be divisible by the number of training processes ({world}: "
                         "trainer.devices × trainer.num_nodes), so that every rank samples the same number of prompts")
    per_rank = n // world
    return slice(rank * per_rank, (rank + 1) * per_rank)


def prompt_seeds(seed: int, step: int, draw: int, count: int) -> list[int]:
    """One sampling seed per prompt of a global batch, from (run seed, RL step, sampling round, position):
    with `sampler.seeding=per_prompt` a prompt's completions do not depend on which rank samples it."""
    return [int(np.random.SeedSequence([seed, step, draw, i]).generate_state(1)[0]) for i in range(count)]


def mean_over_ranks(per_rank: list[dict[str, float]], maxed: tuple[str, ...] = (), weighted: tuple[str, ...] = (),
                    weight: str = "") -> dict[str, float]:
    """Per-key mean over the ranks that report the key; the max for keys in `maxed`; for keys in `weighted`
    the mean weighted by each rank's `weight` value (a token mean over several ranks' tokens)."""
    out = {}
    for key in dict.fromkeys(k for d in per_rank for k in d):
        reporting = [d for d in per_rank if key in d]
        values = [d[key] for d in reporting]
        if key in maxed:
            out[key] = float(max(values))
        elif key in weighted and all(weight in d for d in reporting) and sum(d[weight] for d in reporting) > 0:
            out[key] = float(sum(d[key] * d[weight] for d in reporting) / sum(d[weight] for d in reporting))
        else:
            out[key] = float(np.mean(values))
    return out
