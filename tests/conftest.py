from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

from r1lab.plugins import load_plugins, register_search_path
from r1lab.report import read_scalars  # noqa: F401 - shared with the tests

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("R1LAB_DATA_DIR", str(SHARED_DATA))

load_plugins()
register_search_path()


def compose_config(overrides: list[str] = (), output_dir: Path | None = None) -> DictConfig:
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir) if output_dir else "/nonexistent-output-dir"
    return cfg


# Settings that keep a training run to a few seconds on 2 CPU cores.
FAST = ["trainer.enable_progress_bar=false", "rl.prompts_per_step=2", "sampler.group_size=4",
        "sampler.max_new_tokens=16"]


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "r1lab", *args], cwd=cwd, env=full_env, text=True,
                            capture_output=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"r1lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data folder {SHARED_DATA} is missing (it sits beside the repository)")
    return SHARED_DATA
