"""Checkpoints: written atomically (a crash mid-write never leaves a truncated checkpoint), the resume path
resolved, and the random generators captured so that a resumed run continues the same run."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read: the message says why and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before it takes the name: a crash leaves the old file or the new
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CheckpointError(f"could not write the checkpoint {path} ({exc.strerror or exc}); the checkpoints "
                                  f"already in {path.parent} are intact. Free space or choose another run directory "
                                  "(hydra.run.dir=...), then resume=auto") from exc
        os.replace(partial, path)  # atomic on POSIX


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The RL steps a checkpoint has done (0 for a checkpoint without r1lab's state), read without loading its
    tensors; a file that is not a whole checkpoint gets a clear error, before any model is built. None for
    DeepSpeed's sharded checkpoint folders, which only DeepSpeed reads."""
    path = Path(path)
    if path.is_dir():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"resume: {path} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]}). It may be truncated or corrupt; pass another file "
                              f"(the run's checkpoints/ folder keeps one every callbacks.checkpoint.every_n_train_steps "
                              "steps), or start afresh without resume=") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"resume: {path} is not a Lightning checkpoint (no state_dict); pass a .ckpt that "
                              "r1lab wrote (checkpoints/last.ckpt or checkpoints/step*.ckpt)")
    return int(checkpoint.get("r1lab_rng", {}).get("rl_step", 0))


@contextmanager
def checkpoint_mismatch_explained(checkpoint: str | None) -> Iterator[None]:
    """Around `trainer.fit(ckpt_path=checkpoint)`: a checkpoint of another model (shapes or names that differ)
    becomes one clear error instead of torch's list of every mismatched tensor."""
    try:
        yield
    except RuntimeError as exc:
        if checkpoint is None or "Error(s) in loading state_dict" not in str(exc):
            raise
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise CheckpointError(f"resume: {checkpoint} holds weights of another model than this run's (model=...): "
                              f"{details[0] if details else str(exc)[:200]}; resume with the model and options it "
                              "was trained with, or start afresh without resume=") from None


def resolve_resume(resume: str | None, run_dir: Path) -> str | None:
    """`resume=<file.ckpt>`, `resume=<run dir>` (its last checkpoint), or `resume=auto` (this run dir's last
    checkpoint if there is one, else a fresh start)."""
    if resume in (None, "", "null"):
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt" if (path / "checkpoints").is_dir() else path / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume!r}: no checkpoint at {path}; pass a .ckpt file, a run directory "
                                "with checkpoints/last.ckpt, or resume=auto")
    return str(path)


def rng_state() -> dict[str, Any]:
    """Every random generator a run draws from (torch, CUDA, Python, NumPy), as plain ints, lists and tensors
    so that weights-only loading accepts a checkpoint holding it."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, keys.tolist(), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
