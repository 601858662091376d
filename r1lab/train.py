"""Build everything from the config, fit, and return the swept metric.

`cfg.stage` chooses what a run does: `stage=rl` (the default: GRPO and friends) or `stage=pretrain` (the toy
base model); each is a function `stage(cfg) -> metric`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from r1lab.callbacks.curriculum import CurriculumUpdate
from r1lab.checkpointing import AtomicCheckpointIO, resolve_resume
from r1lab.header import print_run_header
from r1lab.plugins import load_plugins
from r1lab.rewards.base import RewardSet
from r1lab.rl.module import RLModule
from r1lab.strategies import build_strategy, is_deepspeed, leave_no_ranks_behind, start_ranks_from_the_saved_config
from r1lab.tasks.datamodule import PromptDataModule

# The frozen reference model is in eval mode on purpose, and checkpoints after the step's updates are what
# resuming needs.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")


def train(cfg: DictConfig) -> float | None:
    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints its own; don't print twice
    load_plugins()
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    threads = torch_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    logging.getLogger("r1lab").info("torch threads: %d", torch.get_num_threads())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    stage = instantiate(cfg.stage)
    return stage(cfg)


def torch_threads(cfg: DictConfig) -> int | None:
    """`threads`, or under the joblib launcher the machine's cores shared by its parallel jobs (two jobs of
    two torch threads each on two cores would collapse)."""
    if cfg.get("threads"):
        return int(cfg.threads)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    cores = os.cpu_count() or 1
    jobs = int(launcher.get("n_jobs", -1))
    return max(1, cores // (cores if jobs <= 0 else jobs))


def make_trainer(cfg: DictConfig, callbacks: list[Callback], model: torch.nn.Module | None = None,
                 max_grad_norm: float | None = None, **overrides: Any) -> pl.Trainer:
    """The Lightning Trainer from `cfg.trainer`, with r1lab's callbacks, logger and atomic checkpoints.

    `model` fills in what the strategy needs to know about it (FSDP: its decoder-layer classes).
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


def rl_stage(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> float | None:
    """Reinforcement learning on a task: the RL step in r1lab/rl/module.py, driven by Lightning.

    `callbacks` are added to the config's (for programs that drive r1lab, e.g. benchmarks/vs_trl.py).
    """
    sampler = instantiate(cfg.sampler)  # cheap validation first: bad options fail before the model loads
    loss = instantiate(cfg.loss)
    advantage = instantiate(cfg.advantage)
    rewards = RewardSet.from_config(cfg.reward)
    task = instantiate(cfg.task)
    datamodule = PromptDataModule(task, instantiate(cfg.curriculum), cfg.rl.prompts_per_step, seed=cfg.seed)
    policy = instantiate(cfg.model)
    monitor = [cfg.get("optimized_metric")] + [c.get("monitor") for c in cfg.callbacks.values() if c is not None]
    module = RLModule(policy, sampler, rewards, advantage, loss, **cfg.rl.optim, **cfg.rl.schedule,
                      dynamic_sampling=cfg.rl.dynamic_sampling.enabled, max_draws=cfg.rl.dynamic_sampling.max_draws,
                      monitor=monitor, seed=cfg.seed)

    trainer = make_trainer(cfg, callbacks=[CurriculumUpdate(), *callbacks], model=policy.model,
                           max_grad_norm=cfg.rl.optim.max_grad_norm)
    if trainer.is_global_zero:
        print_run_header(cfg, load_plugins(), cfg.paths.output_dir, policy.source)
    checkpoint = resolve_resume(cfg.get("resume"), Path(cfg.paths.output_dir))
    with leave_no_ranks_behind():
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)

    value = module.last_metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or not math.isfinite(float(value)) else float(value)
