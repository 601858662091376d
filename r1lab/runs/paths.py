"""Where r1lab finds its data sets when the config does not say: the `${r1lab_data_dir:}` resolver."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

DATA_ENV = "R1LAB_DATA_DIR"
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root when r1lab runs from a checkout


def data_dir_candidates() -> list[Path]:
    """Looked at in order when R1LAB_DATA_DIR is unset: ./data, then shared/data beside the checkout."""
    return [Path.cwd() / "data", CHECKOUT.parent / "shared" / "data"]


def data_dir() -> str:
    """R1LAB_DATA_DIR, else the first candidate folder that exists, else ./data (which the error names)."""
    if os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV]
    return str(next((c for c in data_dir_candidates() if c.is_dir()), Path("data")))


def where_data_is_looked_for() -> str:
    looked = ", ".join(str(c) for c in data_dir_candidates())
    return f"{DATA_ENV}={os.environ[DATA_ENV]!r}" if os.environ.get(DATA_ENV) else f"{DATA_ENV} (unset), {looked}"


OmegaConf.register_new_resolver("r1lab_data_dir", data_dir, replace=True)
