"""Every process-wide workaround for Hydra and Lightning, in one place: each says why, and when it can go.

Nothing else in r1lab patches a library, rewrites `sys.argv` or filters warnings.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def quiet_lightning() -> None:
    """Warnings and double printing that Lightning gives every r1lab run, though nothing is wrong.

    - "Found N module(s) in eval mode": the frozen reference model is in eval mode on purpose.
    - "Using ModelCheckpoint with manual optimization": checkpoints after the step's updates are exactly
      what resuming needs. Both can go if Lightning adds a way to say "intended".
    - Lightning prints its own log lines; propagating them to the root logger (Hydra's handler) would print
      each twice. Can go if Lightning stops attaching its own handler.
    """
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
    logging.getLogger("lightning.pytorch").propagate = False
    quiet_deprecations()


def warnings_to_log_file() -> None:
    """Python warnings (torch's, transformers', a plugin's) print to stderr only; the run's log file gets each one
    too (r1lab.runs.run_log), so that r1lab.log tells what the terminal did. Wraps `warnings.showwarning`, the hook the
    warnings module offers for this, once per process; filters still decide what shows."""
    from r1lab.runs.run_log import to_file

    shown = warnings.showwarning
    if getattr(shown, "r1lab_log_file", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        shown(message, category, filename, lineno, file, line)
        to_file(f"{category.__name__}: {message} ({filename}:{lineno})", logging.WARNING)

    show.r1lab_log_file = True
    warnings.showwarning = show


def quiet_deprecations() -> None:
    """Deprecation notices that dependencies print on every run, about calls that are not the user's:

    - transformers 5 renamed the `past_key_values` argument to `cache`; r1lab passes `past_key_values`, which
      every supported transformers (>= 4.51) accepts. Can go when r1lab requires a transformers with `cache`.
    - Lightning's own pytree helper uses `isinstance(treespec, LeafSpec)`, deprecated by torch 2.13. Can go
      with a Lightning release that no longer does.
    - transformers 5 warns that `is_gradient_checkpointing` is deprecated when Lightning or peft reads it
      (SFT of a LoRA model). Can go when they read `is_activation_checkpointing`.
    """
    warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated")
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    generic = logging.getLogger("transformers.utils.generic")
    if not any(isinstance(f, _DropCacheRename) for f in generic.filters):
        generic.addFilter(_DropCacheRename())


class _DropCacheRename(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`past_key_values`/`cache_params` are deprecated" not in record.getMessage()


def step_progress_bar():
    """Lightning's Rich progress bar, described by what r1lab counts: "steps (max 100)".

    Why: Lightning describes the bar by epochs, and an r1lab run has one endless epoch of prompts (max_epochs
    is -1), so it read "Epoch 0/-2". This overrides Lightning's private `_get_train_description`; it can go
    when Lightning describes step-limited runs by steps.
    """
    from lightning.pytorch.callbacks import RichProgressBar

    class StepProgressBar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            limit = self.trainer.max_steps
            return f"steps (max {limit})" if limit and limit > 0 else "steps"

    return StepProgressBar()


def run_hydra_app(app: Callable[[], Any], argv: list[str]) -> Any:
    """Run a `@hydra.main` app on `argv`. Hydra reads its command line from `sys.argv` and has no argument
    for it, so the CLI (which first rewrites `eval ...` shortcuts) sets `sys.argv`. Stays while Hydra does."""
    sys.argv = [sys.argv[0], *argv]
    return app()


def start_ranks_from_the_saved_config() -> None:
    """Make Lightning start the other DDP ranks of a Hydra job from the job's saved config.

    Why: Lightning restarts the original command line in every rank (with `hydra.run.dir` set). Inside a
    multirun (`-m`) that command is the whole sweep, so each rank would launch a sweep of its own. Instead,
    each rank runs exactly this job: `python -m r1lab -cp <run dir>/.hydra -cn config`, in the same run dir.
    This replaces Lightning's private `_hydra_subprocess_cmd`; it can go when Lightning's subprocess
    launcher starts ranks of a Hydra multirun job correctly by itself.
    """
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    if getattr(trainer_launcher._hydra_subprocess_cmd, "r1lab", False):
        return
    lightnings_own = fabric_launcher._hydra_subprocess_cmd

    def job_command(local_rank: int):
        from pathlib import Path

        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        from r1lab.runs.run_dir import process_log_name

        hydra = HydraConfig.get()
        run_dir = Path(hydra.runtime.output_dir).resolve()
        saved = run_dir / hydra.output_subdir if hydra.output_subdir else None
        if saved is None or not (saved / "config.yaml").is_file():
            return lightnings_own(local_rank)
        command = [sys.executable, "-m", "r1lab", "-cp", str(saved), "-cn", "config", f"hydra.run.dir={run_dir}",
                   "hydra.output_subdir=null", f"hydra.job.name={process_log_name(local_rank)}"]
        return command, get_original_cwd()

    job_command.r1lab = True
    fabric_launcher._hydra_subprocess_cmd = trainer_launcher._hydra_subprocess_cmd = job_command


def leave_in_order(dist: Any, timeout_s: float = 120.0) -> None:
    """Drop the process group with rank 0 last.

    Why: rank 0 hosts the rendezvous store, and a rank 0 that exits while another rank is still dropping its
    group (slower, e.g. under load) resets that rank's connections ("gloo: Connection reset by peer" on rank 1).
    So the other ranks drop theirs and say so in the store; rank 0 waits for them, then drops its own.
    """
    from datetime import timedelta

    from torch.distributed import distributed_c10d

    rank, world = dist.get_rank(), dist.get_world_size()
    store = distributed_c10d._get_default_store()  # private, but the only handle on the group's own store
    if rank != 0:
        dist.destroy_process_group()
    try:
        if rank != 0:
            store.set(f"r1lab/left/{rank}", "1")
        elif world > 1:
            store.set_timeout(timedelta(seconds=timeout_s))
            store.wait([f"r1lab/left/{r}" for r in range(1, world)])
    except Exception as exc:  # a rank that died already: leaving is all that is left to do
        logging.getLogger("r1lab").warning("ranks did not all confirm leaving the process group: %s", exc)
    if rank == 0:
        dist.destroy_process_group()


@contextmanager
def leave_no_ranks_behind() -> Iterator[None]:
    """Around `trainer.fit`: afterwards, drop the process group and the rank variables Lightning put into the
    environment.

    Why: in a multirun, the next job in the same process would otherwise take them for an external
    launcher's ranks and wait for processes that have already exited. Can go when Lightning cleans up the
    environment it sets after `fit`.
    """
    import torch.distributed as dist

    before = dict(os.environ)
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            leave_in_order(dist)
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)
