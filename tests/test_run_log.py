"""r1lab.log tells the run's story (header, progress, end summary, a fatal error with its traceback), and the
run's report shows every reward term and plugin metric."""

import logging
import re
import warnings

from r1lab.engines.patches import warnings_to_log_file
from r1lab.testing import FAST, run_cli


def test_the_log_file_holds_the_header_progress_and_end_summary_in_order(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=r1_zero", "trainer.max_steps=3", "callbacks.progress.every_n_steps=2", *FAST,
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    text = (run_dir / "r1lab.log").read_text()
    marks = ["torch threads:", "run header", "accuracy×1.0, format×0.1", "step 0 of 0-2: reward",
             "step 2 of 0-2: reward", "finished: 3 RL steps", "no aha moment detected", f"policy: {run_dir / 'policy'}"]
    positions = [text.find(mark) for mark in marks]
    assert -1 not in positions and positions == sorted(positions), dict(zip(marks, positions))
    assert "step 1 of" not in text  # every 2 steps, and the first
    # No progress bar (FAST turns it off): the progress lines reach the terminal too, the summary last of all.
    assert "step 2 of 0-2: reward" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("TensorBoard:")
    assert "Writing model shards" not in result.stderr


def test_a_fatal_error_is_in_the_log_file_with_its_traceback(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=r1_zero", "rl.prompts_per_step=0", *FAST[:1], f"hydra.run.dir={run_dir}"],
                     cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # the terminal: the message alone
    text = (run_dir / "r1lab.log").read_text()
    assert re.search(r"\[ERROR\] - error: rl.prompts_per_step must be >= 1", text)
    assert "Traceback (most recent call last)" in text and "in setup" in text


def test_python_warnings_reach_the_log_file(tmp_path):
    handler = logging.FileHandler(tmp_path / "r1lab.log")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():  # restores warnings.showwarning afterwards
            warnings_to_log_file()
            warnings.simplefilter("always")
            warnings.warn("the tokenizer has no pad token", UserWarning)
    finally:
        root.removeHandler(handler)
        handler.close()
    assert "UserWarning: the tokenizer has no pad token" in (tmp_path / "r1lab.log").read_text()


def test_the_run_report_lists_reward_terms_and_curriculum_metrics(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(["+experiment=r1_zero", "trainer.max_steps=2", "curriculum=difficulty", *FAST,
             f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    run_cli(["report", str(run_dir)], cwd=tmp_path)
    summary = (run_dir / "summary.md").read_text()
    extra = summary.split("Reward terms, curriculum and plugin metrics:")[1]
    assert "`train/reward/accuracy`" in extra and "`train/reward/format`" in extra
    assert "`curriculum/mean_difficulty`" in extra
