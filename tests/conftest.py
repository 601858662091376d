from __future__ import annotations

from pathlib import Path

# Shared with plugin tests: r1lab.testing (also loaded as a pytest plugin: the shared_data fixture).
from r1lab.testing import FAST, compose_config, read_scalars, run_cli  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
