"""A generation budget: stop RL once the rollouts have generated a given number of tokens.

Samplers differ in what a step costs (a tree search generates many tokens per kept completion), so runs
compared "per step" are not compared at equal compute. This callback logs the running total
(`perf/generated_tokens`, every token the sampler generated, search included) and stops the run after the
step that reaches `max_tokens`. For a wall-clock budget use Lightning's `trainer.max_time`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from r1lab.rl.metrics import generated_tokens


class GenerationBudget(pl.Callback):
    def __init__(self, max_tokens: int | None = None):
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"callbacks.budget.max_tokens must be >= 1 (generated tokens), or null for no budget; "
                             f"got {max_tokens}")
        self.max_tokens = max_tokens
        self.spent = 0.0

    @property
    def state_key(self) -> str:
        return "GenerationBudget"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # outputs.rollout is the global batch, so every rank counts the same total and stops at the same step.
        self.spent += float(generated_tokens(outputs.rollout).sum())
        if trainer.logger and trainer.is_global_zero:
            trainer.logger.log_metrics({"perf/generated_tokens": self.spent}, step=outputs.step)
        if self.max_tokens is not None and self.spent >= self.max_tokens:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"spent": self.spent}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.spent = float(state_dict["spent"])
