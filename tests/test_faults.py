"""Faults survived: kill -9 at random points and halfway through checkpoint writes, preemption signals and
Ctrl-C. After each, `resume=auto` continues, and TensorBoard shows exactly the uninterrupted run, step for step.

The default run injects a few faults; `python -m pytest -m faults` runs the long campaign (>= 10 kills).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAST, read_scalars
from r1lab.runs.checkpointing import checkpoint_step

REPO = Path(__file__).resolve().parents[1]
STEPS = 8
SIGNAL = ["+reward.digits._target_=rewards_for_tests.digit_share", "+reward.digits._partial_=true",
          "+reward.digits.weight=1.0"]  # a reward that varies, so every step changes the policy
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}


def args(run_dir: Path, steps: int = STEPS) -> list[str]:
    return ["+experiment=r1_zero", *FAST, *SIGNAL, f"trainer.max_steps={steps}", "callbacks.checkpoint.every_n_train_steps=1",
            "callbacks.policy=null", "seed=7", "resume=auto", f"hydra.run.dir={run_dir}"]


def start(run_dir: Path, wrapper: list[str] | None = None, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, *(wrapper or ["-m", "r1lab"]), *args(run_dir)]
    return subprocess.Popen(command, cwd=run_dir.parent, env={**ENV, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(run_dir: Path) -> str:
    """Run (or resume) to the end; its output."""
    process = start(run_dir)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-3000:]
    return out


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> bool:
    """True once `path` exists; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def assert_same_run(reference: dict, run_dir: Path) -> None:
    """Every metric of `run_dir`, step for step, equals the uninterrupted run's: none missing, none twice."""
    scalars = read_scalars(run_dir)
    assert [s for s, _ in scalars["train/reward"]] == list(range(STEPS))
    for tag, values in reference.items():
        if tag.startswith("perf/") or tag == "epoch":
            continue
        got = scalars.get(tag, [])
        assert [s for s, _ in got] == [s for s, _ in values], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in values], rel=1e-5, abs=1e-7), tag


def assert_last_checkpoint_loads(run_dir: Path) -> None:
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():  # a kill before the first checkpoint leaves none: resume=auto then starts afresh
        assert 1 <= checkpoint_step(last) <= STEPS
        assert "state_dict" in torch.load(last, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    run_dir.parent.mkdir(exist_ok=True)
    finish(run_dir)
    return read_scalars(run_dir)


def kill_at_random(run_dir: Path, rng: random.Random) -> bool:
    """Start the run, SIGKILL it at a random moment of its training; False if it finished first."""
    process = start(run_dir)
    if wait_for(run_dir / "checkpoints" / "step000001.ckpt", process):
        time.sleep(rng.uniform(0.0, 1.0))  # the run trains ~2 s more: the kill lands mid-training
    injected = process.poll() is None
    if injected:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    return injected


def kill_while_saving(run_dir: Path, save: int) -> bool:
    """Start the run; it SIGKILLs itself halfway through writing its `save`-th checkpoint file."""
    process = start(run_dir, wrapper=[str(REPO / "tests" / "kill_during_checkpoint.py")],
                    env={"R1LAB_TEST_FAULT_AT_SAVE": str(save)})
    process.communicate(timeout=300)
    return process.returncode == -signal.SIGKILL


def campaign(tmp_path: Path, reference: dict, random_kills: int, write_kills: list[int], seed: int) -> None:
    rng = random.Random(seed)
    injected = 0
    trials = [("random", None)] * random_kills + [("write", save) for save in write_kills]
    for number, (kind, save) in enumerate(trials):
        run_dir = tmp_path / f"trial{number}"
        hit = kill_at_random(run_dir, rng) if kind == "random" else kill_while_saving(run_dir, save)
        injected += hit
        assert_last_checkpoint_loads(run_dir)  # a write cut short left at most a .partial file beside it
        finish(run_dir)  # resume=auto
        assert_same_run(reference, run_dir)
        assert not list((run_dir / "checkpoints").glob(".*.partial"))  # rewritten and renamed since
    assert injected == len(trials), f"only {injected} of {len(trials)} faults landed during training"


def test_kill_9_at_a_random_moment_and_during_a_checkpoint_write_is_survived(tmp_path, reference):
    campaign(tmp_path, reference, random_kills=1, write_kills=[3], seed=0)


@pytest.mark.faults
def test_kill_9_campaign(tmp_path, reference):
    campaign(tmp_path, reference, random_kills=8, write_kills=[1, 2, 5, 8], seed=1)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_preemption_signal_checkpoints_stops_cleanly_and_the_requeued_run_continues(tmp_path, reference, name):
    run_dir = tmp_path / name
    process = start(run_dir)
    assert wait_for(run_dir / "checkpoints" / "step000002.ckpt", process)
    process.send_signal(getattr(signal, name))
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out[-3000:]
    assert f"stopped by {name} after step" in out
    stopped_at = checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
    assert 2 <= stopped_at < STEPS  # it stopped at the next step boundary, well before the end
    assert not list((run_dir / "checkpoints").glob("last-v*.ckpt"))
    out = finish(run_dir)  # what SLURM's requeue (or submitit's) runs: the same command, resume=auto
    assert f"from RL step {stopped_at}" in out
    assert_same_run(reference, run_dir)
