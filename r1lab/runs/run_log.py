"""The run's story in its log file (`r1lab.log` in the run directory): what the terminal showed, in plain text.

Hydra's job logging gives the root logger a file handler on the run directory's log, so `log.info(...)` reaches
the terminal and the file alike. What r1lab prints for people instead of logging (the run header's table, the
aha moment, diagnostics, the end summary, a fatal error) goes to the terminal as printed and to the file through
`tell` and `to_file`. Outside a Hydra job (a notebook, a test calling a stage) there is no file: they only print.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

log = logging.getLogger("r1lab")


def log_files() -> list[logging.FileHandler]:
    """The run's log files: the file handlers Hydra's job logging put on the root logger."""
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def to_file(text: str, level: int = logging.INFO, exc_info: Any = None) -> None:
    """Write `text` to the run's log file only (the terminal has it already, or should not: a traceback)."""
    handlers = log_files()
    if not handlers:
        return
    if exc_info is True:
        exc_info = sys.exc_info()
    record = log.makeRecord(log.name, level, __file__, 0, text, None, exc_info)
    for handler in handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


def tell(message: str, style: str | None = None, level: int = logging.INFO) -> None:
    """`message` on the terminal (in rich `style`, e.g. "bold magenta") and, plain, in the run's log file."""
    Console(soft_wrap=True).print(escape(message), style=style)  # the terminal wraps; a pipe keeps lines whole
    to_file(message, level)


def plain_text(renderable: Any, width: int = 120) -> str:
    """A rich renderable (the header's table) as the plain text a log file can hold."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable)
    return buffer.getvalue().rstrip()
