"""The run's progress and its end, in words: a line every `every_n_steps` RL steps, and a summary at the end.

Both go to the run's log file (r1lab.log); the progress lines reach the terminal too when it has no progress bar
(`trainer.enable_progress_bar=false`, or a batch job), the summary always.
"""

from __future__ import annotations

import math
from collections import defaultdict
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from r1lab.runs.run_log import tell, to_file
from r1lab.runs.scalars import REWARD_TERM_PREFIX, silent_term_note

# (metric, how the line names it, format)
SHOWN = (("train/reward", "reward", "{:.3f}"), ("train/accuracy", "accuracy", "{:.3f}"),
         ("train/completion_len", "length", "{:.1f} tokens"), ("aha/self_verify_rate", "verify rate", "{:.2f}"),
         ("perf/step_s", "", "{:.2f} s/step"))


def describe(metrics: dict[str, float]) -> str:
    shown = []
    for key, name, form in SHOWN:
        value = metrics.get(key)
        if value is not None and math.isfinite(float(value)):
            shown.append(f"{name} {form.format(float(value))}".strip())
    return ", ".join(shown)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class ProgressLog(pl.Callback):
    """Every `every_n_steps` RL steps (and the first): "step 10 of 0-99: reward 0.312, accuracy 0.250, ...";
    at the end: how many steps ran, in what time, why it stopped, the last metrics, the aha step, where things are."""

    def __init__(self, every_n_steps: int = 10):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.progress.every_n_steps must be >= 1 (RL steps between log lines), got "
                             f"{every_n_steps}")
        self.every_n_steps = every_n_steps
        self.started: float | None = None
        self.first_step: int | None = None
        self.last: tuple[int, dict[str, float]] | None = None
        self.ended = False
        self.term_scored: defaultdict[str, bool] = defaultdict(bool)

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.first_step, self.last = time.perf_counter(), None, None
        self.term_scored = defaultdict(bool)

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        metrics = getattr(outputs, "metrics", None)
        if metrics is None:  # not an RL step (an SFT stage's loss): Lightning's own bar and logs tell it
            return
        step = outputs.step
        for tag, value in metrics.items():  # which reward terms ever scored something (silent ones get a note)
            if tag.startswith(REWARD_TERM_PREFIX):
                self.term_scored[tag[len(REWARD_TERM_PREFIX):]] |= math.isfinite(value) and value != 0
        self.first_step = step if self.first_step is None else self.first_step
        self.last = (step, metrics)
        if step != self.first_step and step % self.every_n_steps:
            return
        limit = f" of 0-{trainer.max_steps - 1}" if trainer.max_steps and trainer.max_steps > 0 else ""
        line = f"step {step}{limit}: {describe(metrics)}"  # TensorBoard's step numbers, as aha/step
        if trainer.progress_bar_callback is None:
            tell(line)
        else:
            to_file(line)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ended = self.last is not None  # a run that raised ends without a summary: its error says why

    @rank_zero_only
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # After every callback's on_train_end: the progress bar's last frame, the policy and last.ckpt are written.
        if stage == "fit" and self.ended:
            tell(self.summary(trainer))
        self.ended = False

    def summary(self, trainer: pl.Trainer) -> str:
        step, metrics = self.last
        steps = step + 1 - (self.first_step or 0)
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        resumed = f" (resumed at step {self.first_step})" if self.first_step else ""
        reason = ("max_steps reached" if trainer.max_steps and step + 1 >= trainer.max_steps
                  else "stopped early (a budget, max_time or a signal: see above)")
        aha = next((c.detector.aha_step for c in trainer.callbacks if hasattr(c, "detector")), None)
        run_dir = Path(trainer.default_root_dir)
        lines = [f"finished: {steps} RL steps{resumed} in {duration(elapsed)}, {reason}",
                 f"last step ({step}): {describe(metrics)}",
                 f"aha moment at step {aha}" if aha is not None else "no aha moment detected"]
        lines += [f"note: {silent_term_note(term)}" for term, scored in sorted(self.term_scored.items()) if not scored]
        for label, path in (("policy", run_dir / "policy"), ("checkpoints", run_dir / "checkpoints"),
                            ("TensorBoard", run_dir / "tb")):
            if path.exists():
                lines.append(f"{label}: {path}")
        return "\n".join(lines)
