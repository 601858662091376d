"""The DataModule yields prompts only, in the order the curriculum chooses."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from r1lab.curricula.base import Curriculum
from r1lab.rollout import PromptBatch
from r1lab.tasks.base import PromptTask


class PromptDataModule(pl.LightningDataModule):
    def __init__(self, task: PromptTask, curriculum: Curriculum, prompts_per_step: int = 8, seed: int = 0):
        super().__init__()
        self.task, self.curriculum = task, curriculum
        self.prompts_per_step = prompts_per_step
        self.seed = seed
        self.curriculum.setup(task.rows, prompts_per_step)

    def train_dataloader(self) -> DataLoader:
        # An own generator: creating the iterator must not draw from the global RNG (resume equality).
        return DataLoader(self.task.rows, batch_sampler=self.curriculum, collate_fn=PromptBatch.collate,
                          generator=torch.Generator().manual_seed(self.seed))

    def extra_batch(self, draw: int) -> PromptBatch:
        """Prompts for the `draw`-th extra sampling round of the current step (dynamic sampling)."""
        indices = self.curriculum.extra_batch_at(self.curriculum.position, draw)
        return PromptBatch.collate([self.task.rows[i] for i in indices])

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state_dict["curriculum"])
