"""A sweep (`-m`) runs every job even when some fail: each failure is recorded, and the CLI ends the sweep
with a summary of the failed jobs and a non-zero exit status."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from r1lab.runs.errors import TRACEBACK_ENV, record_fatal, user_message

log = logging.getLogger("r1lab")


@dataclass(frozen=True)
class FailedJob:
    number: int
    overrides: str
    message: str
    bad_input: bool  # False: a bug (its traceback is in the job's log)


FAILED: list[FailedJob] = []  # jobs of this process's sweep that failed (the basic launcher runs them here)


class JobFailed(RuntimeError):
    """A sweep job that failed, for launchers that run jobs in other processes (Hydra reports it at the end)."""


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _runs_jobs_here() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return "BasicLauncher" in str(HydraConfig.get().launcher.get("_target_", ""))


@contextmanager
def sweep_job() -> Iterator[None]:
    from hydra.core.hydra_config import HydraConfig

    try:
        yield
    except Exception as exc:
        job = HydraConfig.get().job
        message = user_message(exc)
        failed = FailedJob(int(job.num), job.override_dirname or "(no overrides)", message or
                           f"{type(exc).__name__}: {exc}", message is not None)
        if message is None or os.environ.get(TRACEBACK_ENV):
            log.error("job %d failed:\n%s", failed.number, traceback.format_exc())
        else:  # the message on the terminal; the job's log file keeps the traceback too
            record_fatal(exc, message)
        print(f"error: job {failed.number} ({failed.overrides}): {failed.message}", file=sys.stderr, flush=True)
        if not _runs_jobs_here():
            raise JobFailed(f"job {failed.number} ({failed.overrides}): {failed.message}") from None
        FAILED.append(failed)  # the sweep goes on with the next job


def sweep_summary() -> int:
    """After a sweep: print the failed jobs; the exit status (0 when none failed, 2 for bad input, 1 for a bug)."""
    if not FAILED:
        return 0
    print(f"error: {len(FAILED)} job(s) of the sweep failed (the others ran):", file=sys.stderr)
    for job in FAILED:
        print(f"  job {job.number} ({job.overrides}): {job.message}", file=sys.stderr)
    return 2 if all(job.bad_input for job in FAILED) else 1
