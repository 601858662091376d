from __future__ import annotations

from typing import TYPE_CHECKING

import lightning.pytorch as pl

if TYPE_CHECKING:
    from r1lab.rl.module import StepOutput


class CurriculumUpdate(pl.Callback):
    """After each step, tell the curriculum which prompts were trained and how each group scored.

    Runs before checkpointing (Lightning orders checkpoint callbacks last), so saved positions are exact.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: StepOutput, batch: object,
                           batch_idx: int) -> None:
        rollout = outputs.rollout  # its groups may differ from `batch` under dynamic sampling
        indices = rollout.columns["index"][:: rollout.group_size]
        # Accuracy is the task's verdict (stored once on the scores), whatever the reward terms are called.
        per_prompt = {"reward": rollout.grouped(rollout.rewards).mean(1).tolist(),
                      "accuracy": rollout.grouped(outputs.scored.correct).nanmean(1).tolist()}
        curriculum = trainer.datamodule.curriculum
        if trainer.logger is not None:  # what this step's prompts were, before the update changes the state
            trainer.logger.log_metrics(curriculum.metrics(indices), step=outputs.step)
        curriculum.update(indices, per_prompt)
