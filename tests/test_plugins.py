"""The extension path as a third party uses it: a plugin package, pip-installed, found by entry point."""

import re
from pathlib import Path

import pytest

from conftest import install_plugin, read_scalars, run_cli

PYPROJECT = """
[project]
name = "r1lab-shout"
version = "0.3.1"

[project.entry-points."r1lab.plugins"]
shout = "r1lab_shout:plugin"
broken = "r1lab_shout.broken:plugin"

[tool.setuptools]
packages = ["r1lab_shout", "r1lab_shout.conf", "r1lab_shout.conf.reward"]

[tool.setuptools.package-data]
"*" = ["*.yaml"]
"""

FILES = {
    "r1lab_shout/__init__.py": """
        from r1lab.plugins import Plugin

        plugin = Plugin(name="shout", conf="pkg://r1lab_shout.conf", modules=("r1lab_shout.rewards",))
    """,
    "r1lab_shout/rewards.py": """
        from r1lab.registry import REWARDS
        from r1lab.rewards.base import Reward


        @REWARDS.register("shout")
        class ShoutReward(Reward):
            \"\"\"Share of upper-case letters in the completion.\"\"\"

            def __call__(self, prompts, completions, **columns):
                return [sum(ch.isupper() for ch in c) / max(len(c), 1) for c in completions]


        # A clash with a core name: r1lab keeps its own.
        REWARDS.add("accuracy", ShoutReward)
    """,
    "r1lab_shout/broken.py": """
        raise ImportError("this plugin is broken on purpose")
    """,
    "r1lab_shout/conf/__init__.py": "",
    "r1lab_shout/conf/reward/shout.yaml": """
        shout:
          _target_: r1lab_shout.rewards.ShoutReward
          weight: 0.5
    """,
}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    return install_plugin(tmp_path_factory, "shout", PYPROJECT, FILES)


def env(site: Path, disable: str = "broken", strict: str = "0") -> dict[str, str]:
    return {"PYTHONPATH": str(site), "R1LAB_DISABLE_PLUGINS": disable, "R1LAB_STRICT_PLUGINS": strict,
            "COLUMNS": "200"}  # rich tables: no wrapping


def test_an_installed_plugin_adds_a_reward_usable_from_the_command_line(plugin_site, tmp_path):
    listing = run_cli(["list", "reward"], cwd=tmp_path, env=env(plugin_site)).stdout
    assert "Share of upper-case letters in the completion." in listing and "shout (r1lab-shout 0.3.1)" in listing
    assert re.search(r"│ accuracy\s+│ r1lab\s+│", listing)  # core won the clash
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=r1_zero", "reward=[accuracy,format,shout]", "trainer.max_steps=2",
                      "rl.prompts_per_step=2", "sampler.max_new_tokens=32",
                      "trainer.enable_progress_bar=false", "reward.shout.weight=0.25", f"hydra.run.dir={run_dir}"],
                     cwd=tmp_path, env=env(plugin_site))
    assert "shout (r1lab-shout 0.3.1)" in result.stdout  # the run header lists plugins and versions
    assert "keeping r1lab's" in result.stderr
    scalars = read_scalars(run_dir)
    assert [step for step, _ in scalars["train/reward/shout"]] == [0, 1]


def test_a_disabled_plugin_is_not_imported_and_its_options_are_unknown(plugin_site, tmp_path):
    result = run_cli(["+experiment=r1_zero", "reward=[accuracy,shout]", "trainer.max_steps=1"], cwd=tmp_path,
                     env=env(plugin_site, disable="shout,broken"), check=False)
    assert result.returncode != 0
    available = re.search(r"unknown reward option 'shout'\. Available: ([^.]+)\.", result.stderr)
    assert available and "shout" not in available.group(1).split(", ") and "accuracy" in available.group(1)
    listing = run_cli(["list", "reward"], cwd=tmp_path, env=env(plugin_site, disable="shout,broken")).stdout
    assert "shout" not in listing.split("plugins:")[0] and "disabled: broken, shout" in listing


def test_a_broken_plugin_warns_by_name_or_fails_in_strict_mode(plugin_site, tmp_path):
    relaxed = run_cli(["list", "reward"], cwd=tmp_path, env=env(plugin_site, disable=""))
    assert "r1lab plugin 'broken' failed to load: ImportError: this plugin is broken on purpose" in relaxed.stderr
    assert "shout" in relaxed.stdout  # the healthy plugin still loads
    strict = run_cli(["list", "reward"], cwd=tmp_path, env=env(plugin_site, disable="", strict="1"), check=False)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr  # the message alone
    assert "error: r1lab plugin 'broken' failed to load" in strict.stderr
    assert "R1LAB_STRICT_PLUGINS=1" in strict.stderr
    run = run_cli(["+experiment=r1_zero", "trainer.max_steps=1"], cwd=tmp_path,
                  env=env(plugin_site, disable="", strict="1"), check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "error: r1lab plugin 'broken'" in run.stderr
