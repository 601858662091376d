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
