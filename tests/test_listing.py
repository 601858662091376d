"""`python -m r1lab list`: components with their own docstrings and kinds, every config group's options with
their origin; R1LAB_DISABLE_PLUGINS by either name, warnings for unknown names and for option-file clashes."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from r1lab.reporting.listing import group_options, kind_of
from r1lab.plugins import LoadedPlugin, Plugin, PluginState, warn_about_clashes
from r1lab.registry import Registry
from r1lab.testing import run_cli


def test_list_experiment_shows_every_experiment_with_its_origin_and_description(tmp_path):
    out = run_cli(["list", "experiment"], cwd=tmp_path, env={"COLUMNS": "250"}).stdout
    assert "r1_zero" in out and "DeepSeek-R1-Zero in the toy world" in out
    assert "prm_hacking" in out and "prm" in out  # a plugin's experiment, from the plugin
    assert "reward" not in out.split("plugins:")[0].split("\n")[0]  # only the group asked for
    options = dict((option, origin) for option, origin, _ in group_options()["experiment"])
    assert options["r1_zero"] == "r1lab" and options["prm_hacking"] == "prm"
    assert {"task", "model", "trainer", "stage", "experiment", "loss"} <= set(group_options())
    bad = run_cli(["list", "experimnt"], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Did you mean 'experiment'?" in bad.stdout


def test_piped_list_keeps_brackets_and_whole_descriptions(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # as `python -m r1lab list | less` sees it
    out = subprocess.run([sys.executable, "-m", "r1lab", "list", "trainer"], cwd=tmp_path, env=env, text=True,
                         capture_output=True, check=True).stdout
    zero3 = next(line for line in out.splitlines() if "deepspeed_zero3" in line)
    assert "pip install 'r1lab[deepspeed]'" in zero3  # not eaten as rich markup
    # The option file's whole leading comment (two lines there), on one table line.
    assert "Rollouts gather the full weights once per RL step" in zero3


def test_components_show_their_own_docstring_and_what_they_are():
    class Base:
        """The base class's words."""

    class Quiet(Base):
        pass

    class Talks(Base):
        """Its own words."""

    def reward_function(prompts, completions, **columns):
        """A TRL-style reward function."""
        return [0.0] * len(completions)

    registry = Registry("widget", "widget")
    registry.add("quiet", Quiet)
    registry.add("talks", Talks)
    registry.add("fn", reward_function)
    assert registry.entry("quiet").description == "" and registry.entry("talks").description == "Its own words."
    assert registry.entry("fn").description == "A TRL-style reward function."
    assert (kind_of(Talks), kind_of(reward_function)) == ("class", "function")


def test_a_function_reward_shows_as_a_function_in_the_run_header(tmp_path):
    result = run_cli(["+experiment=r1_zero", "trainer.max_steps=1", "rl.prompts_per_step=2", "sampler.group_size=2",
                      "sampler.max_new_tokens=8", "trainer.enable_progress_bar=false", "callbacks.diagnostics=null",
                      "+reward.digits._target_=rewards_for_tests.digit_share", "+reward.digits._partial_=true",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                     env={"COLUMNS": "250", "PYTHONPATH": str(Path(__file__).parent)})
    assert "digits×1.0 (function rewards_for_tests.digit_share)" in result.stdout


def test_an_option_file_two_sources_provide_is_a_warning(tmp_path):
    (tmp_path / "reward").mkdir()
    (tmp_path / "reward" / "accuracy.yaml").write_text("accuracy:\n  _target_: x.Y\n")
    (tmp_path / "reward" / "unique.yaml").write_text("unique:\n  _target_: x.Z\n")
    state = PluginState(loaded=[LoadedPlugin(Plugin(name="copycat", conf=str(tmp_path)), "copycat", "0.1")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_about_clashes(state)
    messages = [str(w.message) for w in caught]
    assert messages == ["r1lab plugin 'copycat' provides reward=accuracy, which 'r1lab' provides too; "
                        "reward=accuracy means 'r1lab''s (the first on the search path): rename one"]


@pytest.mark.parametrize("name", ["length_penalty", "r1lab-length-penalty", "R1LAB_LENGTH_PENALTY"])
def test_plugins_are_disabled_by_entry_point_or_distribution_name(tmp_path, name):
    out = run_cli(["list", "reward"], cwd=tmp_path, env={"R1LAB_DISABLE_PLUGINS": name, "COLUMNS": "250"})
    assert "disabled: length_penalty" in out.stdout and "cosine_length" not in out.stdout.split("plugins:")[0]


def test_an_unknown_name_to_disable_is_a_warning_that_lists_the_plugins(tmp_path):
    out = run_cli(["list", "reward"], cwd=tmp_path, env={"R1LAB_DISABLE_PLUGINS": "lenght_penalty"})
    assert "R1LAB_DISABLE_PLUGINS names no installed plugin: lenght_penalty" in out.stderr
    assert "length_penalty (r1lab-length-penalty)" in out.stderr
