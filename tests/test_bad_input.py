"""The bad-input catalogue (README, "When input is wrong"): each is answered by one paragraph that says what
was wrong and what is allowed, with exit status 2 and no traceback, and no run directory is harmed."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from conftest import FAST, compose_config, read_scalars, run_cli
from r1lab.runs.checkpointing import checkpoint_step
from r1lab.runs.errors import reported
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
    "max_new_tokens past the context": (["sampler.max_new_tokens=100000000"],
                                        "sampler.max_new_tokens=100000000 does not fit the model's context of 512"),
    "a reward returning strings": (["+reward.text._target_=rewards_for_tests.strings", "+reward.text._partial_=true"],
                                   "reward term 'text' returned '1.0' (str) for completion 0"),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_bad_settings(tmp_path, capsys, case):
    sys.path.insert(0, str(REPO / "tests"))  # rewards_for_tests
    overrides, message = CATALOGUE[case]
    assert message in error_of(tmp_path, overrides, capsys)


@pytest.mark.parametrize(("content", "message"), [
    (GOOD_LINE + b'{"question": "2+2", "answer": \n', "task.jsonl:2 is not valid JSON"),
    (GOOD_LINE + b'{"question": "2+2", "answer": null}\n', "task.jsonl:2 has an empty 'answer' (None)"),
    (GOOD_LINE + json.dumps({"question": "1+" * 3000 + "1", "answer": "#### 3001"}).encode() + b"\n",
     "prompt 1 of the task has at least"),
    (GOOD_LINE + json.dumps({"question": "1+" * 5_000_000 + "1", "answer": "#### 1"}).encode() + b"\n",
     "prompt 1 of the task has at least 16"),
    (b"", "task.jsonl holds no records (it is empty or blank)"),
    (GOOD_LINE + b'{"question": "caf\xe9", "answer": "#### 1"}\n', "task.jsonl:2 is not UTF-8 text (byte 0xe9"),
    (b'["a list"]\n', "task.jsonl:1 is a JSON list, not an object"),
], ids=["malformed line", "null answer", "prompt longer than the context", "a 10 MB line", "empty file", "not UTF-8",
        "not an object"])
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
    assert "was trained with another model than this run's (name_or_path: 'pkg://r1lab.toy/base_model' → None" in message
    # A checkpoint that does not say which model wrote it: the weights that do not fit are named.
    anonymous = tmp_path / "anonymous.ckpt"
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    checkpoint.pop("r1lab_run")
    torch.save(checkpoint, anonymous)
    message = error_of(tmp_path, ["model=tiny_random", f"resume={anonymous}"], capsys)
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


@contextmanager
def small_disk(folder: Path, megabytes: int):
    """A real full disk: a tmpfs of `megabytes` mounted on `folder` (root only), else None."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "r1lab-test",
                                            str(folder)], capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_stops_with_a_message_and_keeps_the_earlier_checkpoints(tmp_path):
    """The disk really fills (a small tmpfs as the run directory; where mounting is not allowed, a file-size
    limit makes the kernel refuse the write instead): no traceback, no partial file, the earlier checkpoints
    and the logs intact."""
    command = [sys.executable, "-m", "r1lab", "+experiment=r1_zero", *FAST, "trainer.max_steps=6",
               "callbacks.checkpoint.every_n_train_steps=1", "callbacks.policy=null"]
    with small_disk(tmp_path / "disk", 40) as disk:  # room for two checkpoints of the toy model (14 MB each)
        run_dir = (disk or tmp_path / "disk") / "run"
        limit = None if disk else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (10_000_000, 10_000_000)))
        result = subprocess.run([*command, f"hydra.run.dir={run_dir}"], cwd=tmp_path, text=True, capture_output=True,
                                env={**os.environ, **ENV}, timeout=300, preexec_fn=limit)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "could not write the checkpoint" in result.stderr
        assert ("No space left on device" if disk else "File too large") in result.stderr
        assert "Traceback" not in result.stderr
        saved = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
        if disk:  # the first step's checkpoints fit, the second step's do not
            assert saved == ["last.ckpt", "step000001.ckpt"]
        for name in saved:
            assert "state_dict" in torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=False)
        assert not list((run_dir / "checkpoints").glob(".*.partial"))  # the failed write leaves nothing behind
        assert [s for s, _ in read_scalars(run_dir)["train/reward"]][:1] == [0]  # the logs are kept


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


@pytest.mark.parametrize(("args", "message"), [
    (["sampler.group_size=abc"], "sampler.group_size='abc': expected an integer (the default is 8)"),
    (["seed=abc"], "seed='abc': expected an integer"),
    (["loss.beta=nan"], "loss.beta=nan: numbers must be finite"),
    (["loss.beta=inf"], "loss.beta=inf: numbers must be finite"),
    (["reward.accuracy.weight=nan"], "reward.accuracy.weight=nan: numbers must be finite"),
    (["sampler.temperature=hot"], "sampler.temperature='hot': expected a number"),
    (["trainer.enable_progress_bar=maybe"], "trainer.enable_progress_bar='maybe': expected true or false"),
    (["trainer.max_step=5"], "there is no key 'trainer.max_step' in the config. Did you mean trainer.max_steps"),
    (["sede=3"], "there is no key 'sede' in the config. Did you mean seed?"),
    (["-m", "loss.beta=0.04,nan"], "loss.beta=nan: numbers must be finite"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_wrong_types_typos_and_non_finite_numbers_stop_before_the_run_directory_is_touched(tmp_path, args, message):
    run_dir = tmp_path / "run"
    err = cli_error(["+experiment=r1_zero", *args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"],
                    tmp_path)
    assert message in err
    assert not run_dir.exists()  # nothing was written: no .hydra/, no log


def test_a_run_directory_that_holds_a_run_is_never_run_into_again(tmp_path):
    run_dir = tmp_path / "run"
    common = ["+experiment=r1_zero", *FAST, "callbacks.policy=null", f"hydra.run.dir={run_dir}"]
    run_cli([*common, "trainer.max_steps=1"], cwd=tmp_path, env=ENV)
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    err = cli_error([*common, "trainer.max_steps=1"], tmp_path)
    assert f"the run directory {run_dir} already holds a run" in err and "resume=auto" in err
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before  # not a byte changed
    run_cli([*common, "trainer.max_steps=2", "resume=auto"], cwd=tmp_path, env=ENV)  # continuing it is allowed
    assert [s for s, _ in read_scalars(run_dir)["train/reward"]] == [0, 1]


def test_a_sweep_runs_every_job_when_one_fails_and_lists_the_failure(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "+experiment=r1_zero", *FAST, "trainer.max_steps=1", "callbacks.policy=null",
                      "loss.beta=0.0,-1,0.04", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=ENV, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "1 job(s) of the sweep failed (the others ran)" in result.stderr
    assert "job 1 (" in result.stderr and "loss.beta must be >= 0" in result.stderr
    assert (sweep / "0" / "checkpoints").is_dir() and (sweep / "2" / "checkpoints").is_dir()  # before and after it
    assert not (sweep / "1" / "checkpoints").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_auto_falls_back_to_the_newest_readable_checkpoint(tmp_path, finished_run, damage):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(b"" if damage == "empty" else last.read_bytes()[:1000])
    result = run_cli(["+experiment=r1_zero", *FAST, "trainer.max_steps=3", "callbacks.policy=null",
                      "callbacks.checkpoint.every_n_train_steps=1", "resume=auto", f"hydra.run.dir={run_dir}"],
                     cwd=tmp_path, env=ENV)
    assert "step000002.ckpt, the newest readable checkpoint" in result.stdout + result.stderr
    assert ("is empty (0 bytes" if damage == "empty" else "is not a readable checkpoint") in result.stdout + result.stderr
    assert (run_dir / "checkpoints" / "last.ckpt.unreadable").is_file()  # kept, never deleted
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 3  # and the run went on from step 2


def test_an_empty_checkpoint_says_so(tmp_path, capsys):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert f"resume: {empty} is empty (0 bytes" in error_of(tmp_path, [f"resume={empty}"], capsys)


def test_resuming_into_another_model_is_refused_and_into_another_task_warned(tmp_path, finished_run):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    base = [*FAST, "trainer.max_steps=3", "callbacks.policy=null", "resume=auto", f"hydra.run.dir={run_dir}"]
    before = sorted(p.name for p in run_dir.rglob("*"))
    err = cli_error(["+experiment=r1_zero_control", *base], tmp_path)
    assert "was trained with another model than this run's (name_or_path:" in err and "control_model" in err
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # refused before Hydra wrote a thing
    result = run_cli(["+experiment=r1_zero", "task=addition", *base], cwd=tmp_path, env=ENV)
    assert "resumed into another task: toy_addition → addition" in result.stdout


def test_a_nan_reward_is_named_in_the_log(tmp_path, caplog):
    sys.path.insert(0, str(REPO / "tests"))  # rewards_for_tests
    cfg = compose_config(["+experiment=r1_zero", *FAST, "trainer.max_steps=1", "callbacks.policy=null",
                          "+reward.broken._target_=rewards_for_tests.not_a_number", "+reward.broken._partial_=true",
                          "rl.schedule.max_consecutive_skips=1"], output_dir=tmp_path / "run")
    with caplog.at_level("WARNING"), pytest.raises(RuntimeError, match="consecutive RL steps had non-finite"):
        run_stage(cfg)
    assert "reward term 'broken' returned 8 non-finite value(s)" in caplog.text


def test_a_model_folder_without_tokenizer_files(tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "weights_only"
    config = AutoConfig.for_model("qwen2", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    message = error_of(tmp_path, ["model=hf", f"model.name_or_path={folder}"], capsys)
    assert f"the model folder {folder} has no tokenizer files" in message
