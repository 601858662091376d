"""Outside the tests too, r1lab finds the data sets beside its checkout, and says where it looked."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1lab.tasks.jsonl import JsonlTask, TaskDataError

REPO = Path(__file__).resolve().parents[1]


def data_dir_seen_from(cwd: Path, env: dict) -> str:
    code = "from r1lab.runs.paths import data_dir; print(data_dir())"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_data_dir_is_found_without_r1lab_data_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "R1LAB_DATA_DIR"}
    assert data_dir_seen_from(tmp_path, env) == str(REPO.parent / "shared" / "data")  # beside the checkout
    (tmp_path / "data").mkdir()
    assert data_dir_seen_from(tmp_path, env) == str(tmp_path / "data")  # ./data comes first
    assert data_dir_seen_from(tmp_path, {**env, "R1LAB_DATA_DIR": "/my/data"}) == "/my/data"


def test_a_missing_data_file_says_where_r1lab_looked():
    with pytest.raises(TaskDataError, match=r"does not exist; set task.path, or R1LAB_DATA_DIR .*looked at: "):
        JsonlTask("/no/such/gsm8k/test.jsonl", name="gsm8k")
