"""The Lightning Trainer every stage uses: `cfg.trainer` with r1lab's callbacks, logger, strategy and atomic
checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from r1lab.callbacks.preemption import Preemption
from r1lab.runs.checkpointing import AtomicCheckpointIO
from r1lab.engines.patches import start_ranks_from_the_saved_config, step_progress_bar
from r1lab.engines.strategies import build_strategy, is_deepspeed


def make_trainer(cfg: DictConfig, callbacks: list[Callback], model: torch.nn.Module | None = None,
                 max_grad_norm: float | None = None, resume_step: int | None = None, **overrides: Any) -> pl.Trainer:
    """The Lightning Trainer from `cfg.trainer`, with `callbacks` before the config's (`cfg.callbacks`) and
    the preemption handler (`Preemption`: SIGTERM, SIGUSR1/2 and Ctrl-C checkpoint and stop cleanly).

    `model` fills in what the strategy needs to know about it (FSDP: its decoder-layer classes);
    `max_grad_norm` goes into DeepSpeed's config, which clips inside its own step; `resume_step` is the step a
    resumed run continues from, None for a run that does not resume (see `make_logger`).
    """
    max_steps = overrides.get("max_steps", cfg.trainer.get("max_steps", -1))
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"trainer.max_steps must be >= 1 (optimizer steps), or -1 for no limit; got {max_steps}")
    callbacks = callbacks + [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks.append(Preemption(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"))
    if cfg.trainer.get("enable_progress_bar", True):
        # First: its last frame is drawn before the other callbacks' end-of-run output (the run's summary).
        callbacks.insert(0, step_progress_bar())  # trainer.enable_progress_bar=false turns it off
    trainer_cfg = OmegaConf.masked_copy(cfg.trainer, [k for k in cfg.trainer if k != "strategy"])
    strategy = build_strategy(cfg.trainer.get("strategy"), model, max_grad_norm, cfg.trainer.get("accelerator"))
    start_ranks_from_the_saved_config()
    # DeepSpeed writes its own (sharded) checkpoint folders; the others go through r1lab's atomic writer.
    plugins = [] if is_deepspeed(strategy) else [AtomicCheckpointIO()]
    logger = make_logger(cfg, resume_step)
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=logger, default_root_dir=cfg.paths.output_dir,
                          strategy=strategy, plugins=plugins, **overrides)
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer


def make_logger(cfg: DictConfig, resume_step: int | None = None) -> Logger | bool:
    """`cfg.logger`, or False without one. A resumed run's TensorBoard writer purges from `resume_step` on: the
    interrupted run may have logged steps past its last checkpoint, which the resumed run logs again, and
    TensorBoard then shows each step once (SummaryWriter's `purge_step`)."""
    if not cfg.get("logger"):
        return False
    extra = {}
    if resume_step is not None and "TensorBoardLogger" in str(cfg.logger.get("_target_", "")):
        extra["purge_step"] = resume_step
    return instantiate(cfg.logger, **extra)
