"""Bad input is answered by one paragraph that says what was wrong and what is allowed, not a traceback.

The Hydra app runs every stage inside `reported()`: errors that come from the run's input (its config, data
files, checkpoints, run directory, missing optional packages) print as `error: ...` and exit with status 2;
anything else is a bug and keeps its traceback. `R1LAB_TRACEBACK=1` shows the traceback of either kind.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException

from r1lab.runs.run_log import to_file

TRACEBACK_ENV = "R1LAB_TRACEBACK"
# What bad input raises: r1lab's own errors derive from ValueError; files and folders give OSError; a missing
# optional package gives ImportError.
INPUT_ERRORS = (ValueError, KeyError, OSError, ImportError)


class RunError(RuntimeError):
    """Something stopped a run for a reason the user can act on (a run directory in use, a diverged run)."""


def user_message(exc: BaseException) -> str | None:
    """The one-paragraph message for an error caused by the run's input; None for anything else (a bug)."""
    where = ""
    if isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        full_key = str(exc).rsplit("full_key:", 1)[-1].strip() if "full_key:" in str(exc) else ""
        where, exc = (f" (building {full_key})" if full_key else ""), exc.__cause__
    if not isinstance(exc, (*INPUT_ERRORS, RunError)):
        return None
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text} ({exc.filename})"
    return f"{' '.join(str(text).split())}{where}"


def record_fatal(exc: BaseException, message: str | None) -> None:
    """The error that ends a run, in its log file with the traceback (the terminal shows the message alone)."""
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return
    headline = message or f"{type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        headline = "interrupted (KeyboardInterrupt)"
    to_file(f"error: {headline}", logging.ERROR, exc_info=(type(exc), exc, exc.__traceback__))


@contextmanager
def reported() -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        message = None if os.environ.get(TRACEBACK_ENV) else user_message(exc)
        record_fatal(exc, message if message is not None else user_message(exc))
        if message is None:
            raise
        print(f"error: {message}\n(the traceback: {TRACEBACK_ENV}=1)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
