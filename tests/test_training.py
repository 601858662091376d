"""Real training runs on the tiny random model: tags, checkpoints, resume, sweeps, errors."""

import json
from pathlib import Path

import pytest
from hydra.errors import InstantiationException

from conftest import FAST, compose_config, read_scalars, run_cli
from r1lab.models import ModelLoadError, load_policy
from r1lab.rl.module import DivergedError
from r1lab.stages import run_stage

REQUIRED_TAGS = ["train/reward", "train/reward/accuracy", "train/reward/format", "train/accuracy",
                 "train/completion_len", "train/kl", "train/clip_frac", "train/loss", "train/zero_std_frac",
                 "perf/step_s", "perf/rollout_tokens_per_s"]
SIGNAL = ["+reward.digits._target_=rewards_for_tests.digit_share", "+reward.digits._partial_=true",
          "+reward.digits.weight=1.0"]


def test_r1_zero_runs_from_the_command_line_and_logs_every_required_tag(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=r1_zero", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                      "rl.prompts_per_step=4", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert "deprecated" not in result.stdout + result.stderr  # dependencies' notices are not shown every run
    scalars = read_scalars(run_dir)
    for tag in REQUIRED_TAGS:
        assert [step for step, _ in scalars[tag]] == [0, 1], tag
    assert scalars["train/completion_len"][0][1] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and samples[0]["step"] == 0 and {"prompt", "completion", "reward"} <= set(samples[0])
    report = run_cli(["report", str(run_dir)], cwd=tmp_path).stdout
    assert "aha.png" in report and (run_dir / "aha.png").stat().st_size > 10_000
    summary = (run_dir / "summary.md").read_text()
    assert "`aha/self_verify_rate`" in summary and "`train/accuracy_hard`" in summary
    policy = load_policy(str(run_dir / "policy"))  # the final policy loads as a plain transformers model
    assert policy.model.num_parameters() > 0
    assert policy.tokenizer.decode(policy.tokenizer("<think>12+3</think>")["input_ids"]) == "<think>12+3</think>"


def run(tmp_path: Path, name: str, overrides: list[str]) -> Path:
    run_dir = tmp_path / name
    run_stage(compose_config(["+experiment=r1_zero", *FAST, *overrides], output_dir=run_dir))
    return run_dir


def test_resumed_run_continues_the_same_run(tmp_path):
    common = [*SIGNAL, "callbacks.checkpoint.every_n_train_steps=2", "callbacks.policy=null", "seed=7"]
    full = run(tmp_path, "full", [*common, "trainer.max_steps=4"])
    checkpoint = full / "checkpoints" / "step000002.ckpt"
    assert checkpoint.is_file()
    resumed = run(tmp_path, "resumed", [*common, "trainer.max_steps=4", f"resume={checkpoint}"])
    full_scalars, resumed_scalars = read_scalars(full), read_scalars(resumed)
    assert [s for s, _ in resumed_scalars["train/reward"]] == [2, 3]
    # The policy really changes between steps (otherwise equality would be trivial) ...
    assert full_scalars["train/grad_norm"][2][1] > 0 and full_scalars["train/kl"][3][1] > 0
    # ... and every metric of steps 2 and 3 is the same in both runs (timings aside).
    for tag, values in full_scalars.items():
        if tag.startswith("perf/") or tag == "epoch":
            continue
        after = [(s, v) for s, v in values if s >= 2]
        resumed_values = resumed_scalars.get(tag, [])  # some tags come and go (e.g. only with a right answer)
        assert [s for s, _ in resumed_values] == [s for s, _ in after], tag
        assert [v for _, v in resumed_values] == pytest.approx([v for _, v in after], rel=1e-5, abs=1e-7), tag


def test_resume_auto_starts_fresh_without_a_checkpoint_and_rejects_a_missing_path(tmp_path):
    run_dir = run(tmp_path, "auto", ["trainer.max_steps=1", "resume=auto", "callbacks.policy=null"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(FileNotFoundError, match="resume='/no/such.ckpt'"):
        run(tmp_path, "missing", ["trainer.max_steps=1", "resume=/no/such.ckpt"])


def test_non_finite_rewards_skip_the_update_and_are_logged(tmp_path):
    overrides = ["reward=[accuracy]", "+reward.nan._target_=rewards_for_tests.not_a_number",
                 "+reward.nan._partial_=true", "rl.schedule.max_consecutive_skips=2", "trainer.max_steps=5"]
    with pytest.raises(DivergedError, match="3 consecutive RL steps"):
        run(tmp_path, "nan", overrides)
    scalars = read_scalars(tmp_path / "nan")
    assert [v for _, v in scalars["train/skipped_updates"]] == [1.0, 1.0]
    assert all(v == 8 for _, v in scalars["train/nonfinite_rewards"])  # 2 prompts × 4 completions
    assert "train/loss" not in scalars


def test_multirun_sweeps_beta_and_group_size(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run_cli(["-m", "+experiment=r1_zero", "loss.beta=0,0.04", "sampler.group_size=2,4", "trainer.max_steps=1",
             "rl.prompts_per_step=2", "sampler.max_new_tokens=8", "trainer.enable_progress_bar=false",
             "callbacks.policy=null", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    for job in jobs:
        assert "train/reward" in read_scalars(job)


@pytest.mark.parametrize(("override", "message"), [
    ("sampler.group_size=1", "group_size must be >= 2, got 1: GRPO-style advantages compare completions"),
    ("loss.eps=0", "loss.eps must be > 0"),
    ("model.name_or_path=Org/not-downloaded", "not a local folder.*cannot be downloaded here"),
])
def test_bad_settings_fail_with_a_clear_error(tmp_path, override, message):
    with pytest.raises((InstantiationException, ValueError, ModelLoadError), match=message):
        run(tmp_path, "bad", ["trainer.max_steps=1", override])


def test_a_task_file_without_its_answer_column_names_column_and_file(tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps({"question": "1+1", "solution": "2"}) + "\n")
    with pytest.raises(InstantiationException, match=r"broken.jsonl:1 has no column 'answer'"):
        run(tmp_path, "bad", ["task=gsm8k", f"task.path={data}", "trainer.max_steps=1"])


def test_command_line_errors_are_readable(tmp_path):
    result = run_cli(["+experiment=r1_zero", "sampler.group_size=1", "trainer.max_steps=1"], cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "group_size must be >= 2, got 1" in result.stderr
    result = run_cli(["+experiment=r1_zero", "advantage=grpp"], cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "unknown advantage option 'grpp'. Did you mean 'grpo'? Available: dr_grpo, grpo, reinforce_pp, rloo." in result.stderr
    result = run_cli(["-m", "reward=[accuracy],[accuracy,formt]"], cwd=tmp_path, check=False)
    assert result.returncode == 2 and "unknown reward option 'formt'" in result.stderr


def test_the_progress_bar_counts_steps_not_epochs():
    import lightning.pytorch as pl

    from r1lab.engines.patches import step_progress_bar

    bar = step_progress_bar()
    trainer = pl.Trainer(max_steps=7, callbacks=[bar], logger=False, enable_checkpointing=False)
    bar.setup(trainer, None, stage="fit")  # what fit does first
    assert bar._get_train_description(0) == "steps (max 7)"  # was "Epoch 0/-2"
