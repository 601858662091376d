"""Run the stage a composed config names: the one entry every run goes through (the Hydra app, pipelines,
tests and notebooks alike)."""

from __future__ import annotations

import logging
import os

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from r1lab.patches import quiet_lightning
from r1lab.plugins import load_plugins
from r1lab.run_dir import ensure_writable, locked


def run_stage(cfg: DictConfig) -> float | None:
    """Load plugins, set torch threads and seeds, create the run directory (and hold its lock), run
    `cfg.stage`; returns the stage's metric (what a sweeper optimises)."""
    quiet_lightning()
    load_plugins()
    run_dir = ensure_writable(cfg.paths.output_dir)
    threads = torch_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    logging.getLogger("r1lab").info("torch threads: %d", torch.get_num_threads())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    stage = instantiate(cfg.stage)
    with locked(run_dir):  # one run per run directory
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
