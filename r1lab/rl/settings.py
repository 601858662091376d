"""The RL step's own settings (`rl.optim`, `rl.schedule`): plain values, checked once when the run starts.

They live here rather than in `trainer`: under manual optimisation Lightning refuses `gradient_clip_val` and
`accumulate_grad_batches`, so clipping and the PPO schedule belong to the module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimSettings:
    """AdamW with a linear warm-up, and gradient clipping (`rl.optim.*`)."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


@dataclass(frozen=True)
class ScheduleSettings:
    """How each rollout is trained on (`rl.schedule.*`)."""

    ppo_epochs: int = 1  # passes over each rollout (μ)
    num_minibatches: int = 1  # optimizer steps per pass
    max_consecutive_skips: int = 10  # stop after this many RL steps in a row with non-finite rewards or loss
    length_buckets: int = 4  # log-prob passes in this many length-sorted chunks
    share_prompts: bool = True  # each distinct prompt through the model once in those passes

    def __post_init__(self) -> None:
        if self.ppo_epochs < 1 or self.num_minibatches < 1:
            raise ValueError(f"rl.ppo_epochs and rl.num_minibatches must be >= 1, got {self.ppo_epochs}, "
                             f"{self.num_minibatches}")
        if self.length_buckets < 1:
            raise ValueError(f"rl.schedule.length_buckets must be >= 1, got {self.length_buckets}")

    @property
    def updates_per_rollout(self) -> int:
        return self.ppo_epochs * self.num_minibatches
