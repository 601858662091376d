"""Checkpoints: written atomically (a crash mid-write never leaves a truncated checkpoint), the resume path
resolved, and the random generators captured so that a resumed run continues the same run."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        torch.save(checkpoint, partial)
        os.replace(partial, path)  # atomic on POSIX


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
