from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


class CurriculumUpdate(pl.Callback):
    """After each step, tell the curriculum which prompts were trained and how each group scored.

    Runs before checkpointing (Lightning orders checkpoint callbacks last), so saved positions are exact.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        rollout = outputs["rollout"]  # its groups may differ from `batch` under dynamic sampling
        indices = rollout.columns["index"][:: rollout.group_size]
        per_prompt = {"reward": rollout.grouped(rollout.rewards).mean(1).tolist()}
        accuracy = outputs["scored"].terms.get("accuracy")
        if accuracy is not None:
            per_prompt["accuracy"] = rollout.grouped(accuracy).nanmean(1).tolist()
        curriculum = trainer.datamodule.curriculum
        if trainer.logger is not None:  # what this step's prompts were, before the update changes the state
            trainer.logger.log_metrics(curriculum.metrics(indices), step=outputs["step"])
        curriculum.update(indices, per_prompt)
