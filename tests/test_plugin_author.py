"""A new plugin author's path, written from the README's plugin section alone: a reward, an advantage estimator,
a curriculum and an experiment built on r1_zero, in a throwaway package installed as a third party installs it."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import install_plugin, read_scalars, run_cli

PYPROJECT = """
[project]
name = "r1lab-steady"
version = "0.2.0"
dependencies = ["r1lab"]

[project.entry-points."r1lab.plugins"]
steady = "r1lab_steady:plugin"

[tool.setuptools]
packages = ["r1lab_steady", "r1lab_steady.conf", "r1lab_steady.conf.reward", "r1lab_steady.conf.advantage",
            "r1lab_steady.conf.curriculum", "r1lab_steady.conf.experiment"]

[tool.setuptools.package-data]
"*" = ["*.yaml"]
"""

FILES = {
    "r1lab_steady/__init__.py": """
        from r1lab.plugins import Plugin

        plugin = Plugin(name="steady", conf="pkg://r1lab_steady.conf", modules=("r1lab_steady.components",))
    """,
    "r1lab_steady/components.py": """
        import torch

        from r1lab.curricula.base import Curriculum
        from r1lab.registry import ADVANTAGES, CURRICULA, REWARDS
        from r1lab.rewards.base import Reward
        from r1lab.rl.advantages import AdvantageEstimator
        from r1lab.judging.template import split_completion


        @REWARDS.register("thinks")
        class ThinksReward(Reward):
            \"\"\"1 when the completion closes a thinking block of at least min_chars characters.\"\"\"

            def __init__(self, min_chars: int = 1):
                self.min_chars = min_chars

            def __call__(self, prompts, completions, **columns):
                parts = [split_completion(c, p) for p, c in zip(prompts, completions)]
                return [float(x.thinking_closed and len(x.thinking) >= self.min_chars) for x in parts]


        @ADVANTAGES.register("median_baseline")
        class MedianBaseline(AdvantageEstimator):
            \"\"\"A_i = r_i - median of the group's rewards.\"\"\"

            def __call__(self, rollout):
                rewards = rollout.grouped(rollout.rewards)
                return (rewards - rewards.median(dim=1, keepdim=True).values).reshape(-1)


        @CURRICULA.register("easy_first")
        class EasyFirst(Curriculum):
            \"\"\"The easiest difficulty label first, for `easy_steps` steps, then every prompt.\"\"\"

            def __init__(self, easy_steps: int = 10, seed: int = 0):
                super().__init__(seed)
                self.easy_steps = easy_steps

            def setup(self, rows, batch_size):
                super().setup(rows, batch_size)
                easiest = min(row["difficulty"] for row in rows)
                self.easy = [i for i, row in enumerate(rows) if row["difficulty"] == easiest]

            def batch_at(self, step):
                pool = self.easy if step < self.easy_steps else range(len(self.rows))
                generator = torch.Generator().manual_seed(self.seed * 7919 + step)
                picks = torch.randint(len(pool), (self.batch_size,), generator=generator)
                return [pool[i] for i in picks.tolist()]
    """,
    "r1lab_steady/conf/__init__.py": "",
    "r1lab_steady/conf/reward/thinks.yaml": """
        # 1 when the completion closes a thinking block of at least min_chars characters.
        thinks:
          _target_: r1lab_steady.components.ThinksReward
          weight: 0.2
          min_chars: 1
    """,
    "r1lab_steady/conf/advantage/median_baseline.yaml": """
        # The group's median as the baseline.
        _target_: r1lab_steady.components.MedianBaseline
    """,
    "r1lab_steady/conf/curriculum/easy_first.yaml": """
        # The easiest sums first, then all of them.
        _target_: r1lab_steady.components.EasyFirst
        easy_steps: 10
        seed: ${seed}
    """,
    "r1lab_steady/conf/experiment/steady_thinking.yaml": """
        # @package _global_
        # r1_zero with a thinking reward, a median baseline and the easiest sums first.
        defaults:
          - r1_zero
          - override /reward: [accuracy, format, thinks]
          - override /advantage: median_baseline
          - override /curriculum: easy_first
        trainer:
          max_steps: 20
    """,
}

FAST = ["trainer.enable_progress_bar=false", "rl.prompts_per_step=2", "sampler.group_size=4",
        "sampler.max_new_tokens=24"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return install_plugin(tmp_path_factory, "steady", PYPROJECT, FILES)


def env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "COLUMNS": "200"}


def test_each_component_kind_is_listed_with_the_plugin_as_its_origin(site, tmp_path):
    listing = run_cli(["list", "reward", "advantage", "curriculum", "experiment"], cwd=tmp_path, env=env(site)).stdout
    assert "steady (r1lab-steady 0.2.0)" in listing  # the plugins line: name, distribution, version
    for name in ("thinks", "median_baseline", "easy_first", "steady_thinking"):
        assert re.search(rf"│ {name}\s+│ steady\s+│", listing), name
    assert "r1_zero with a thinking reward, a median baseline and the easiest sums first." in listing


def test_an_experiment_on_r1_zero_runs_the_plugins_reward_advantage_and_curriculum(site, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=steady_thinking", "trainer.max_steps=3", "curriculum.easy_steps=2", *FAST,
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env(site))
    assert "MedianBaseline" in result.stdout and "EasyFirst" in result.stdout and "thinks×0.2" in result.stdout
    scalars = read_scalars(run_dir)
    thinks = [value for _, value in scalars["train/reward/thinks"]]
    # The toy prompt opens <think>: read through split_completion, most toy completions close a thinking block.
    assert len(thinks) == 3 and max(thinks) > 0
    difficulty = [value for _, value in scalars["curriculum/mean_difficulty"]]
    assert difficulty[:2] == [2.0, 2.0] and len(difficulty) == 3  # the easiest toy label for easy_steps steps
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "r1lab_steady.components.MedianBaseline" in config and "max_new_tokens: 24" in config
    assert json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])["step"] == 0


def test_a_misspelled_plugin_option_says_which_keys_exist(site, tmp_path):
    result = run_cli(["+experiment=steady_thinking", "reward.thinks.min_char=3", *FAST,
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env(site), check=False)
    assert result.returncode == 2, result.stderr
    assert "there is no key 'reward.thinks.min_char'" in result.stderr
    assert "Did you mean reward.thinks.min_chars?" in result.stderr
    assert not (tmp_path / "run").exists()  # stopped before Hydra made the run directory


def test_a_curriculum_reading_rows_in_its_constructor_is_told_where_they_come_from(site, tmp_path):
    result = run_cli(["+experiment=steady_thinking", "+curriculum.rows=[]", *FAST, "trainer.max_steps=1",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env(site), check=False)
    assert result.returncode == 2, result.stderr
    assert "unexpected keyword argument 'rows'" in result.stderr
    assert "arrive afterwards through setup(rows, batch_size)" in result.stderr


def test_a_sweep_over_the_weight_of_a_term_that_never_scores_says_so(site, tmp_path):
    folder = tmp_path / "sweep"
    run_cli(["-m", "+experiment=steady_thinking", "reward.thinks.min_chars=100000", "reward.thinks.weight=0.1,0.5",
             "trainer.max_steps=2", *FAST, f"hydra.sweep.dir={folder}"], cwd=tmp_path, env=env(site))
    assert "note: reward term 'thinks' was 0 (or unscored) at every step" in (folder / "0" / "r1lab.log").read_text()
    run_cli(["report", str(folder)], cwd=tmp_path, env=env(site))
    report = (folder / "report.md").read_text()
    assert "reward term 'thinks' was 0 (or unscored) at every step of every run" in report
    assert "sweeping reward.thinks.weight cannot show anything" in report
    assert "## Verdicts" not in report and "No claims to judge" in report  # no empty table


def test_the_testing_helpers_import_without_pytest():
    """The quick-start install has no pytest; a plugin's own scripts may still use run_cli and compose_config."""
    code = ("import sys; sys.modules['pytest'] = None\n"  # `import pytest` now raises ImportError
            "from r1lab.testing import FAST, compose_config\n"
            "cfg = compose_config(['+experiment=r1_zero', *FAST])\n"
            "print(cfg.sampler.group_size, cfg.rl.prompts_per_step)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["4", "2"]
