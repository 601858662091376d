"""The bad-input catalogue (README, "When input is wrong"): each is answered by one paragraph that says what
was wrong and what is allowed, with exit status 2 and no traceback, and no run directory is harmed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAST, compose_config, read_scalars, run_cli
from r1lab.errors import reported
from r1lab.stages import run_stage

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}


def error_of(tmp_path: Path, overrides: list[str], capsys) -> str:
    """Run in this process through the app's error reporting; the printed error (exit status 2 asserted)."""
    cfg = compose_config(["+experiment=r1_zero", *FAST, "trainer.max_steps=1", *overrides], output_dir=tmp_path / "run")
    with pytest.raises(SystemExit) as stopped, reported():
        run_stage(cfg)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return next(line for line in err.splitlines() if line.startswith("error: "))


def cli_error(args: list[str], cwd: Path) -> str:
    result = run_cli(args, cwd=cwd, env=ENV, check=False)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return next(line for line in result.stderr.splitlines() if line.startswith("error: "))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A 2-step run with a checkpoint per step, to resume from."""
    run_dir = tmp_path_factory.mktemp("bad_input") / "finished"
    run_stage(compose_config(["+experiment=r1_zero", *FAST, "trainer.max_steps=2", "callbacks.policy=null",
                              "callbacks.checkpoint.every_n_train_steps=1"], output_dir=run_dir))
    return run_dir


def data_file(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "task.jsonl"
    path.write_bytes(content)
    return f"task.path={path}"


GOOD_LINE = b'{"question": "1+1", "answer": "#### 2"}\n'
CATALOGUE = {
    "prompts_per_step=0": (["rl.prompts_per_step=0"], "rl.prompts_per_step must be >= 1"),
    "max_steps=0": (["trainer.max_steps=0"], "trainer.max_steps must be >= 1 (optimizer steps), or -1"),
    "max_new_tokens=0": (["sampler.max_new_tokens=0"], "sampler.max_new_tokens must be >= 1"),
    "temperature=0": (["sampler.temperature=0"], "sampler.temperature must be > 0, got 0: the loss scores tokens"),
    "beta<0": (["loss.beta=-0.1"], "loss.beta must be >= 0"),
    "reward=[]": (["reward=[]"], "reward must name at least one term"),
    "wrong number of rewards": (["+reward.broken._target_=rewards_for_tests.one_value", "+reward.broken._partial_=true"],
                                "reward term 'broken' returned 1 values for 8 completions"),
    "resume path missing": (["resume=/no/such/run.ckpt"], "resume='/no/such/run.ckpt': no checkpoint at"),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_bad_settings(tmp_path, capsys, case):
    sys.path.insert(0, str(REPO / "tests"))  # rewards_for_tests
    overrides, message = CATALOGUE[case]
    assert message in error_of(tmp_path, overrides, capsys)


@pytest.mark.parametrize(("content", "message"), [
    (GOOD_LINE + b'{"question": "2+2", "answer": \n', "task.jsonl:2 is not valid JSON"),
    (b"", "task.jsonl holds no records (it is empty or blank)"),
    (GOOD_LINE + b'{"question": "caf\xe9", "answer": "#### 1"}\n', "task.jsonl:2 is not UTF-8 text (byte 0xe9"),
    (b'["a list"]\n', "task.jsonl:1 is a JSON list, not an object"),
], ids=["malformed line", "empty file", "not UTF-8", "not an object"])
def test_bad_task_files(tmp_path, capsys, content, message):
    assert message in error_of(tmp_path, ["task=gsm8k", data_file(tmp_path, content)], capsys)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_broken_checkpoint_is_named_and_the_run_left_as_it_was(tmp_path, capsys, finished_run, damage):
    good = finished_run / "checkpoints" / "last.ckpt"
    broken = tmp_path / "broken.ckpt"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint at all")
    before = sorted(p.name for p in finished_run.rglob("*"))
    message = error_of(tmp_path, [f"resume={broken}"], capsys)
    assert f"resume: {broken} is not a readable checkpoint" in message and "truncated or corrupt" in message
    assert sorted(p.name for p in finished_run.rglob("*")) == before


def test_a_checkpoint_of_another_model_shape(tmp_path, capsys, finished_run):
    message = error_of(tmp_path, ["model=tiny_random", f"resume={finished_run}"], capsys)
    assert "holds weights of another model than this run's" in message and "key(s) in state_dict" in message


def test_from_the_command_line_there_is_no_traceback(tmp_path, finished_run):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((finished_run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    err = cli_error(["+experiment=r1_zero", *FAST, f"resume={truncated}", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert "is not a readable checkpoint" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{oops\n")
    err = cli_error(["+experiment=r1_zero", "task=gsm8k", f"task.path={bad}", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert "bad.jsonl:1 is not valid JSON" in err


def test_a_run_directory_that_cannot_be_written(tmp_path):
    err = cli_error(["+experiment=r1_zero", "hydra.run.dir=/proc/r1lab-run"], tmp_path)
    assert "the run directory /proc/r1lab-run cannot be created or written" in err


def test_a_full_disk_stops_with_a_message_and_keeps_the_earlier_checkpoints(tmp_path):
    run_dir = tmp_path / "full"
    result = subprocess.run([sys.executable, str(REPO / "tests" / "kill_during_checkpoint.py"), "+experiment=r1_zero",
                             *FAST, "trainer.max_steps=4", "callbacks.checkpoint.every_n_train_steps=1",
                             "callbacks.policy=null", f"hydra.run.dir={run_dir}"], cwd=tmp_path, text=True,
                            capture_output=True, env={**os.environ, **ENV, "R1LAB_TEST_FAULT_AT_SAVE": "5",
                                                      "R1LAB_TEST_FAULT": "disk_full"}, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "could not write the checkpoint" in result.stderr and "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    saved = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert saved == ["last.ckpt", "step000001.ckpt", "step000002.ckpt"]  # saves 1-4; the 5th (step 3) failed
    for name in saved:
        assert "state_dict" in torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=False)
    assert not list((run_dir / "checkpoints").glob(".*.partial"))
    assert [s for s, _ in read_scalars(run_dir)["train/reward"]][:3] == [0, 1, 2]  # the logs are kept


def test_two_runs_into_one_run_directory(tmp_path):
    run_dir = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, "-m", "r1lab", "+experiment=r1_zero", *FAST, "trainer.max_steps=200",
                              "callbacks.policy=null", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run_dir / "tb").is_dir() and time.time() < deadline:
            time.sleep(0.1)
        err = cli_error(["+experiment=r1_zero", *FAST, f"hydra.run.dir={run_dir}"], tmp_path)
        assert f"the run directory {run_dir} is in use by another r1lab run (pid {first.pid}" in err
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)


def test_a_reward_that_hangs_times_out_scores_none_and_is_counted(tmp_path):
    run_dir = tmp_path / "hang"
    started = time.time()
    run_stage(compose_config(["+experiment=r1_zero", *FAST, "trainer.max_steps=2", "callbacks.policy=null",
                              "+reward.slow._target_=rewards_for_tests.hangs", "+reward.slow._partial_=true",
                              "+reward.slow.timeout_s=0.5"], output_dir=run_dir))
    assert time.time() - started < 120
    scalars = read_scalars(run_dir)
    assert [v for _, v in scalars["train/reward_failures/slow"]] == [8.0, 8.0]  # 2 prompts × 4 completions, each step
    assert [s for s, _ in scalars["train/reward/accuracy"]] == [0, 1]  # the other terms still score
    assert all(v != v for _, v in scalars["train/reward/slow"])  # NaN: no value


def test_a_bad_reward_timeout_is_an_error(tmp_path, capsys):
    assert "reward.accuracy.timeout_s must be > 0" in error_of(tmp_path, ["+reward.accuracy.timeout_s=0"], capsys)


@pytest.mark.parametrize("args", [["eval", "model=toy", "limit=0"], ["stage=rejection_sample", "stage.limit=0"]])
def test_a_limit_below_one_is_an_error_before_the_model_loads(tmp_path, args):
    message = cli_error([*args, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert "stage.limit must be >= 1" in message and "got 0" in message
