"""Which completions of a flat reward batch belong to the same prompt (for group-relative rewards)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def group_slices(prompts: Sequence[str], columns: dict[str, Sequence[Any]]) -> list[range]:
    """Runs of consecutive rows with the same prompt index (the step lays groups out prompt-major).

    Uses the `index` column the step passes to every reward; without it, runs of the same prompt text.
    """
    keys = list(columns["index"]) if "index" in columns else list(prompts)
    slices, start = [], 0
    for row in range(1, len(keys) + 1):
        if row == len(keys) or keys[row] != keys[start]:
            slices.append(range(start, row))
            start = row
    return slices


def completion_lengths(completions: Sequence[str], columns: dict[str, Sequence[Any]]) -> list[int]:
    """Token counts from the `completion_ids` column when the step passes it, else character counts."""
    if "completion_ids" in columns:
        return [len(ids) for ids in columns["completion_ids"]]
    return [len(c) for c in completions]
