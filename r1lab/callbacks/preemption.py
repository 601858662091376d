"""Preemption: a signal ends the run cleanly at the next step boundary, with a checkpoint to resume from.

SLURM warns a job before its time limit (`--signal=USR1@90`; submitit uses SIGUSR2) and sends SIGTERM on
preemption; a person presses Ctrl-C. On the first of these the current RL step finishes, `last.ckpt` is
written, the logs are flushed and the run stops with exit code 0; `resume=auto` in the same run directory
continues it exactly. A handler that was installed before (submitit's or Lightning's SLURM requeue) runs after
the checkpoint is written, so the job is still requeued. A second Ctrl-C stops at once, as usual.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from r1lab.engines.distributed import all_ranks_agree

log = logging.getLogger("r1lab")

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")
CHAINED = ("SIGUSR1", "SIGUSR2")  # requeue signals: the handler that was there before still runs


class Preemption(Checkpoint):  # a Checkpoint, so that Lightning runs it after the other callbacks' step hooks
    def __init__(self, path: str | Path, signals: tuple[str, ...] = SIGNALS):
        unknown = [name for name in signals if name not in SIGNALS]
        if unknown:
            raise ValueError(f"Preemption: unknown signals {unknown}; choose from {', '.join(SIGNALS)}")
        self.path, self.signals = Path(path), signals
        self.received: str | None = None
        self.previous: dict[str, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (e.g. a run inside a notebook's worker thread)
        for name in self.signals:
            number = getattr(signal, name)
            self.previous[name] = signal.getsignal(number)
            signal.signal(number, self.note)

    def note(self, number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        if name == "SIGINT" and self.received is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.received = self.received or name
        print(f"\nr1lab: {name} received: finishing this RL step, then checkpointing and stopping"
              + (" (Ctrl-C again to stop at once)" if name == "SIGINT" else ""), flush=True)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not all_ranks_agree(self.received is not None, require_all=False):  # ranks stop together
            return
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                # This file is its `last` from now on: its own end-of-run save overwrites it, not last-v1.ckpt.
                callback.last_model_path = str(self.path)
        trainer.save_checkpoint(self.path)
        for logger in trainer.loggers:
            logger.save()
        trainer.should_stop = True
        step = getattr(pl_module, "rl_step", trainer.global_step)
        if trainer.is_global_zero:
            log.warning("stopped by %s after step %d; checkpoint %s. Continue with resume=auto in the same run "
                        "directory (or resume=%s)", self.received or "another rank's signal", step, self.path,
                        self.path)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for name, handler in self.previous.items():
            signal.signal(getattr(signal, name), handler)
        self.previous = {}
        received, self.received = self.received, None
        if received in CHAINED:
            handler = signal.getsignal(getattr(signal, received))
            if callable(handler):
                handler(getattr(signal, received), None)  # e.g. submitit: requeue this job, then exit

    def state_dict(self) -> dict[str, Any]:
        return {}
