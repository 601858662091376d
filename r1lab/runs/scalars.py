"""Reading a run's TensorBoard scalars, for the run report and the sweep report alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in `<run dir>/tb` as (step, value) pairs, read with tensorboard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(run_dir) / "tb"
    if not tb.is_dir():
        raise FileNotFoundError(f"{run_dir} has no tb/ folder: is it an r1lab run directory?")
    accumulator = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@dataclass
class StartEnd:
    start: float
    end: float


def start_end(series: list[tuple[int, float]], window: int = 5) -> StartEnd:
    """Means of the first and the last `window` finite values."""
    values = [v for _, v in series if math.isfinite(v)]
    if not values:
        return StartEnd(math.nan, math.nan)
    return StartEnd(sum(values[:window]) / len(values[:window]), sum(values[-window:]) / len(values[-window:]))


REWARD_TERM_PREFIX = "train/reward/"


def silent_reward_terms(scalars: dict[str, list[tuple[int, float]]]) -> list[str]:
    """Reward terms whose logged value (`train/reward/<term>`) was 0 or unscored at every step: whatever their
    weight, they added nothing, so a sweep over that weight cannot show anything."""
    silent = []
    for tag, series in scalars.items():
        if tag.startswith(REWARD_TERM_PREFIX) and series and all(v == 0 or not math.isfinite(v) for _, v in series):
            silent.append(tag[len(REWARD_TERM_PREFIX):])
    return sorted(silent)


def silent_term_note(term: str) -> str:
    return (f"reward term {term!r} was 0 (or unscored) at every step: its weight changed nothing (if that is "
            "unexpected: does it read the completion as the prompt style writes it? The toy prompt opens <think> "
            "itself; r1lab.judging.template.split_completion reads both styles)")
