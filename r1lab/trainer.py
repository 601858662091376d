"""The Lightning Trainer every stage uses: `cfg.trainer` with r1lab's callbacks, logger, strategy and atomic
checkpoints."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from r1lab.checkpointing import AtomicCheckpointIO
from r1lab.patches import start_ranks_from_the_saved_config
from r1lab.strategies import build_strategy, is_deepspeed


def make_trainer(cfg: DictConfig, callbacks: list[Callback], model: torch.nn.Module | None = None,
                 max_grad_norm: float | None = None, **overrides: Any) -> pl.Trainer:
    """The Lightning Trainer from `cfg.trainer`, with `callbacks` before the config's (`cfg.callbacks`).

    `model` fills in what the strategy needs to know about it (FSDP: its decoder-layer classes);
    `max_grad_norm` goes into DeepSpeed's config, which clips inside its own step.
    """
    callbacks = callbacks + [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar())  # trainer.enable_progress_bar=false turns it off
    trainer_cfg = OmegaConf.masked_copy(cfg.trainer, [k for k in cfg.trainer if k != "strategy"])
    strategy = build_strategy(cfg.trainer.get("strategy"), model, max_grad_norm)
    start_ranks_from_the_saved_config()
    # DeepSpeed writes its own (sharded) checkpoint folders; the others go through r1lab's atomic writer.
    plugins = [] if is_deepspeed(strategy) else [AtomicCheckpointIO()]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=logger, default_root_dir=cfg.paths.output_dir,
                          strategy=strategy, plugins=plugins, **overrides)
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer
