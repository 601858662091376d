from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from r1lab.strategies import full_policy_state_dict


class SavePolicy(pl.Callback):
    """At the end of training, `save_pretrained` the policy and tokenizer to `<run dir>/<dirname>` (for eval
    and distillation: any `transformers` code can load it)."""

    def __init__(self, dirname: str = "policy"):
        self.dirname = dirname

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Every rank takes part in gathering sharded weights (FSDP, ZeRO-3); rank 0 writes them.
        state = full_policy_state_dict(trainer.strategy, pl_module)
        if not trainer.is_global_zero:
            return
        target = Path(trainer.default_root_dir) / self.dirname
        pl_module.policy.save_pretrained(target, **({"state_dict": state} if state is not None else {}))
        pl_module.tokenizer.save_pretrained(target)
