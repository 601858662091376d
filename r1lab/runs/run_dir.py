"""The run directory: writable, used by one run at a time, each process of the run logging to its own file
(`${r1lab_log_name:}` names it: r1lab.log for the first process, rank_<r>.log or node_<n>_rank_<r>.log for
the others, which share the directory)."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from r1lab.runs.errors import RunError

LOCK_NAME = ".r1lab.lock"


def ensure_writable(run_dir: str | Path) -> Path:
    """Create `run_dir` if needed and check that files can be written there."""
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".r1lab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"the run directory {path} cannot be created or written ({exc.strerror or exc}); choose "
                       "another with hydra.run.dir=... (hydra.sweep.dir=... for -m)") from None
    return path


def is_first_process() -> bool:
    """True unless this is another rank of a multi-process run (which shares the run directory)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def process_log_name(local_rank: int | None = None) -> str:
    """The name of this process's log in the run directory (Hydra's job name): `r1lab` for the first process;
    another rank: its global rank where the launcher says it (RANK: torchrun, SLURM_PROCID: srun), else its
    node and local rank (Lightning's NODE_RANK and LOCAL_RANK; `local_rank` for a rank about to be started)."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ and local_rank is None:
            return "r1lab" if os.environ[name] == "0" else f"rank_{os.environ[name]}"
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    local = str(local_rank) if local_rank is not None else os.environ.get("LOCAL_RANK", "0")
    if node == "0":
        return "r1lab" if local == "0" else f"rank_{local}"
    return f"node_{node}_rank_{local}"


OmegaConf.register_new_resolver("r1lab_log_name", process_log_name, replace=True)


def in_use_by(run_dir: str | Path) -> str | None:
    """Who holds the run directory's lock now ("pid N on host"), None when no run does; takes nothing."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, "r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def in_use_message(run_dir: str | Path, holder: str) -> str:
    return (f"the run directory {run_dir} is in use by another r1lab run ({holder}); wait for it to finish, or "
            "choose another directory with hydra.run.dir=...")


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's lock for the run: a second run into the same directory stops at once with a
    message, instead of interleaving checkpoints and logs. Other ranks of the same run do not take it."""
    if not is_first_process():
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunError(in_use_message(run_dir, holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
