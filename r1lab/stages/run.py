"""Run the stage a composed config names: the one entry every run goes through (the Hydra app, pipelines,
tests and notebooks alike)."""

from __future__ import annotations

import logging
import os
import time

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from r1lab.engines.patches import quiet_lightning, warnings_to_log_file
from r1lab.plugins import load_plugins
from r1lab.engines.precision import resolve_cpu_bf16
from r1lab.runs.run_dir import ensure_writable, locked


def run_stage(cfg: DictConfig) -> float | None:
    """Load plugins, set torch threads and seeds, settle bf16 on a CPU without fast bf16 (r1lab.engines.precision), create
    the run directory (and hold its lock), run `cfg.stage`; returns the stage's metric (what a sweeper optimises)."""
    quiet_lightning()
    warnings_to_log_file()
    load_plugins()
    run_dir = ensure_writable(cfg.paths.output_dir)
    threads = torch_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    log = logging.getLogger("r1lab")
    log.info("torch threads: %d", torch.get_num_threads())
    for warning in resolve_cpu_bf16(cfg):  # after the threads: it times a matrix multiply
        log.warning(warning)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    stage = instantiate(cfg.stage)
    with locked(run_dir):  # one run per run directory
        return stage(cfg)


def torch_threads(cfg: DictConfig) -> int | None:
    """`threads` (default: $R1LAB_THREADS, else auto): a number; `auto` the cores no other process is using
    now, shared by this node's processes, or under the joblib launcher the cores shared by its parallel jobs;
    null torch's own default (every core). Torch threads that share a core with another busy process collapse (up to 6x
    slower than one thread on this 2-core machine), so auto counts only idle cores."""
    threads = cfg.get("threads", "auto")
    if isinstance(threads, str) and threads.strip().lower() in ("null", "none"):  # from R1LAB_THREADS
        threads = None
    elif isinstance(threads, str) and threads.strip().isdigit():
        threads = int(threads)
    if threads is None:
        return None
    if threads != "auto":
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads={threads!r}: give a number of torch threads >= 1, auto (the idle cores) or "
                             "null (torch's default)")
        return threads
    jobs = joblib_jobs()
    if jobs:
        return max(1, usable_cores() // jobs)
    devices = cfg.get("trainer", {}).get("devices", 1)
    processes = devices if cfg.get("trainer", {}).get("accelerator") == "cpu" and isinstance(devices, int) else 1
    return max(1, idle_cores() // max(1, processes))


def joblib_jobs() -> int | None:
    """Jobs the joblib launcher runs at once (None under any other launcher)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    jobs = int(launcher.get("n_jobs", -1))
    return usable_cores() if jobs <= 0 else jobs


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def idle_cores(window_s: float = 0.25) -> int:
    """Cores that no other process kept busy over the last `window_s` seconds (this one sleeps meanwhile),
    at least 1; from /proc/stat, else the 1-minute load average."""
    cores = usable_cores()
    try:
        before = _cpu_times()
        time.sleep(window_s)
        after = _cpu_times()
        busy_fraction = 1 - (after[1] - before[1]) / max(after[0] - before[0], 1)
        busy = busy_fraction * (os.cpu_count() or cores)
    except OSError:
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def _cpu_times() -> tuple[int, int]:
    """(all jiffies, idle + iowait jiffies) summed over every core, from /proc/stat's first line."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]
