"""Checkpoints: written atomically (a crash mid-write never leaves a truncated checkpoint), the resume path
resolved, and the random generators captured so that a resumed run continues the same run."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from r1lab.runs.run_dir import is_first_process


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
        except (OSError, RuntimeError) as exc:  # torch's writer reports a full disk as a RuntimeError
            why = _write_failure(exc, path.parent)  # before the partial file goes: the space it took is the cause
            partial.unlink(missing_ok=True)
            raise CheckpointError(f"could not write the checkpoint {path} ({why}); the "
                                  f"checkpoints already in {path.parent} are intact. Free space or choose another run "
                                  "directory (hydra.run.dir=...), then resume=auto") from exc
        os.replace(partial, path)  # atomic on POSIX


def _write_failure(exc: BaseException, folder: Path) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    disk = os.statvfs(folder)
    if disk.f_bavail * disk.f_frsize < 2**20:
        return f"No space left on device: {disk.f_bavail * disk.f_frsize / 2**20:.1f} MiB free there"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The RL steps a checkpoint has done (0 for a checkpoint without r1lab's state), read without loading its
    tensors; a file that is not a whole checkpoint gets a clear error, before any model is built. None for
    DeepSpeed's sharded checkpoint folders, which only DeepSpeed reads."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike) -> tuple[int | None, dict[str, Any]]:
    """(`checkpoint_step`, the run identity it was saved with: `run_identity`, {} when it has none)."""
    path = Path(path)
    if path.is_dir():
        return None, {}
    if path.stat().st_size == 0:
        raise CheckpointError(f"resume: {path} is empty (0 bytes: a write that never finished, or a copy that "
                              "failed); pass another checkpoint, or resume=auto, which falls back to the newest "
                              "readable one in checkpoints/")
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
    return int(checkpoint.get("r1lab_rng", {}).get("rl_step", 0)), dict(checkpoint.get("r1lab_run") or {})


def run_identity(cfg: Any) -> dict[str, Any]:
    """What a checkpoint records of the run that wrote it, to compare on resume: the model it trains (a resume
    into another model is refused) and its components (others differing are reported)."""
    from omegaconf import OmegaConf

    def target(group: str) -> str | None:
        node = cfg.get(group)
        return str(node.get("_target_")).rsplit(".", 1)[-1] if node is not None and node.get("_target_") else None

    model = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") is not None else {}
    task = cfg.get("task")
    parts = {"task": str(task.get("name") or target("task")) if task is not None else None,
             "reward": ", ".join(sorted(k for k, v in (cfg.get("reward") or {}).items() if v is not None)),
             **{group: target(group) for group in ("advantage", "loss", "curriculum")}}
    return {"model": {k: model.get(k) for k in MODEL_IDENTITY}, "choices": parts}


MODEL_IDENTITY = ("_target_", "name_or_path", "random_init", "peft")


def resume_differences(saved: dict[str, Any], now: dict[str, Any], checkpoint: str) -> list[str]:
    """How this run differs from the one that wrote the checkpoint: raises when the model does; the other
    config-group choices that differ, as `group: saved → now`."""
    if saved.get("model") and saved["model"] != now["model"]:
        changed = [f"{k}: {saved['model'].get(k)!r} → {now['model'].get(k)!r}" for k in MODEL_IDENTITY
                   if saved["model"].get(k) != now["model"].get(k)]
        raise CheckpointError(f"resume: {checkpoint} was trained with another model than this run's "
                              f"({'; '.join(changed)}); resume with the model options it was trained with "
                              "(its run directory's .hydra/overrides.yaml lists them), or start afresh")
    before, after = saved.get("choices", {}), now.get("choices", {})
    return [f"{group}: {before[group]} → {after[group]}" for group in sorted(set(before) & set(after))
            if before[group] != after[group]]


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
    checkpoint if there is one, else a fresh start; see `auto_resume`)."""
    if resume in (None, "", "null"):
        return None
    if resume == "auto":
        return auto_resume(run_dir)[0]
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt" if (path / "checkpoints").is_dir() else path / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume!r}: no checkpoint at {path}; pass a .ckpt file, a run directory "
                                "with checkpoints/last.ckpt, or resume=auto")
    return str(path)


def auto_resume(run_dir: Path, rename: bool = True) -> tuple[str | None, str | None]:
    """`resume=auto`: (checkpoint, note). checkpoints/last.ckpt; when it is unreadable (truncated, empty), the
    newest readable step*.ckpt, with a note that says so (and, with `rename`, the unreadable file renamed
    last.ckpt.unreadable); None when there is none (a fresh start)."""
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    steps = sorted(folder.glob("step*.ckpt"), key=lambda p: p.name, reverse=True) if folder.is_dir() else []
    if not last.exists() and not steps:
        return None, None
    if last.is_file() or last.is_dir():
        try:
            read_checkpoint(last)
            return str(last), None
        except CheckpointError as exc:
            problem = str(exc)
    else:
        problem = f"{last} is missing"
    for candidate in steps:
        try:
            read_checkpoint(candidate)
        except CheckpointError:
            continue
        note = f"{candidate.name}, the newest readable checkpoint: last.ckpt could not be used ({problem})"
        if rename and last.is_file() and is_first_process():  # kept, where Lightning's next last.ckpt can go
            os.replace(last, last.with_name("last.ckpt.unreadable"))
            note += "; it is kept as last.ckpt.unreadable"
        logging.getLogger("r1lab").warning("resume=auto: %s", note)
        return str(candidate), note
    raise CheckpointError(f"resume=auto: no checkpoint in {folder} can be read ({problem}; "
                          f"{len(steps)} step*.ckpt, none readable); start afresh in another directory")


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
