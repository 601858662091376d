from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl

from r1lab.models.peft import EXPORTS, is_peft
from r1lab.engines.strategies import full_policy_state_dict


@contextmanager
def no_progress_bars():
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SavePolicy(pl.Callback):
    """At the end of training, `save_pretrained` the policy and tokenizer to `<run dir>/<dirname>` (for eval
    and distillation: any `transformers` code can load it). A LoRA policy is saved `merged` into its base
    model (the default) or as the `adapter` alone (small; r1lab and peft load it onto the base)."""

    def __init__(self, dirname: str = "policy", peft_export: str = "merged"):
        if peft_export not in EXPORTS:
            raise ValueError(f"callbacks.policy.peft_export must be one of {', '.join(EXPORTS)}, got {peft_export!r}")
        self.dirname, self.peft_export = dirname, peft_export

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Every rank takes part in gathering sharded weights (FSDP, ZeRO-3); rank 0 writes them.
        state = full_policy_state_dict(trainer.strategy, pl_module)
        if not trainer.is_global_zero:
            return
        target = Path(trainer.default_root_dir) / self.dirname
        model = pl_module.policy
        if is_peft(model) and self.peft_export == "merged":
            model = copy.deepcopy(model).merge_and_unload()  # a copy: the module stays as trained
        with no_progress_bars():  # "Writing model shards" would print under the run's end summary
            model.save_pretrained(target, **({"state_dict": state} if state is not None else {}))
        pl_module.tokenizer.save_pretrained(target)
