"""The aha moment: self-verification and completion length rising together, detected once per run."""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only
from r1lab.runs.run_log import tell


class AhaDetector:
    """Two conditions over a rolling window of `window` steps (means over the window):

    1. the self-verify rate is at least `verify_threshold`;
    2. the completion length is at least `length_ratio` × its mean over the run's first `window` steps.

    `update(step, verify_rate, completion_len)` returns the step the first time both hold, else None.
    """

    def __init__(self, window: int = 5, verify_threshold: float = 0.5, length_ratio: float = 1.3):
        if window < 1 or not 0 < verify_threshold <= 1 or length_ratio <= 0:
            raise ValueError("aha detector: need window >= 1, 0 < verify_threshold <= 1 and length_ratio > 0; got "
                             f"{window}, {verify_threshold}, {length_ratio}")
        self.window, self.verify_threshold, self.length_ratio = window, verify_threshold, length_ratio
        self.verify: deque[float] = deque(maxlen=window)
        self.length: deque[float] = deque(maxlen=window)
        self.baseline_length: float | None = None
        self.aha_step: int | None = None

    def update(self, step: int, verify_rate: float, completion_len: float) -> int | None:
        self.verify.append(verify_rate)
        self.length.append(completion_len)
        if len(self.length) < self.window:
            return None
        mean_length = sum(self.length) / self.window
        if self.baseline_length is None:
            self.baseline_length = mean_length
        if self.aha_step is not None:
            return None
        verifies = sum(self.verify) / self.window >= self.verify_threshold
        longer = mean_length >= self.length_ratio * self.baseline_length
        if verifies and longer:
            self.aha_step = step
            return step
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"verify": list(self.verify), "length": list(self.length), "baseline_length": self.baseline_length,
                "aha_step": self.aha_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.verify.extend(state["verify"])
        self.length.extend(state["length"])
        self.baseline_length, self.aha_step = state["baseline_length"], state["aha_step"]


class AhaMomentTracker(pl.Callback):
    """Logs `aha/step` once, when `AhaDetector` fires on `aha/self_verify_rate` and `train/completion_len`,
    and prints the moment with a sample completion."""

    def __init__(self, window: int = 5, verify_threshold: float = 0.5, length_ratio: float = 1.3):
        self.detector = AhaDetector(window, verify_threshold, length_ratio)

    @property
    def state_key(self) -> str:
        return "AhaMomentTracker"

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        metrics = outputs.metrics
        step = outputs.step  # the RL step, as on the metrics' x-axis
        fired = self.detector.update(step, metrics["aha/self_verify_rate"], metrics["train/completion_len"])
        if fired is None:
            return
        if trainer.logger:
            trainer.logger.log_metrics({"aha/step": float(fired)}, step=step)
        rollout = outputs.rollout
        sample = next((c for c in rollout.completions if "wait" in c.lower()), rollout.completions[0])
        tell(f"aha moment at step {fired}: self-verify rate {sum(self.detector.verify) / self.detector.window:.2f}, "
             f"completion length {sum(self.detector.length) / self.detector.window:.1f} tokens "
             f"(from {self.detector.baseline_length:.1f}). A completion: {sample!r}", style="bold magenta")

    def state_dict(self) -> dict[str, Any]:
        return self.detector.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.detector.load_state_dict(state_dict)
