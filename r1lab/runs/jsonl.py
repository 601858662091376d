"""Reading JSON Lines data files (tasks, SFT pairs) with errors that name the file, the line and the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataFileError(ValueError):
    pass


def read_jsonl(path: str | Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of `path`; `what` names the file in errors (e.g.
    "task 'gsm8k'"). A missing file, bytes that are not UTF-8, a line that is not a JSON object, and a file
    with no records at all are errors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataFileError(f"{what}: data file {str(file)!r} does not exist")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[:exc.start].count(b"\n") + 1
        raise DataFileError(f"{what}: {file}:{line} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                            f"{exc.start}); save the file as UTF-8") from None
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{what}: {file}:{number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                                "each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise DataFileError(f"{what}: {file}:{number} is a JSON {type(record).__name__}, not an object "
                                "({\"question\": ..., \"answer\": ...})")
        count += 1
        yield number, record
    if not count:
        raise DataFileError(f"{what}: {file} holds no records (it is empty or blank)")
