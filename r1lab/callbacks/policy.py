from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only


class SavePolicy(pl.Callback):
    """At the end of training, `save_pretrained` the policy and tokenizer to `<run dir>/<dirname>` (for eval
    and distillation: any `transformers` code can load it)."""

    def __init__(self, dirname: str = "policy"):
        self.dirname = dirname

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        target = Path(trainer.default_root_dir) / self.dirname
        pl_module.policy.save_pretrained(target)
        pl_module.tokenizer.save_pretrained(target)
