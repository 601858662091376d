"""The config is the source of truth: every option composes, every _target_ binds, registries and option
files agree both ways."""

import inspect

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_object
from omegaconf import OmegaConf

from conftest import compose_config
from r1lab.registry import REGISTRIES

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
NOT_CONSTRUCTOR_ARGS = {"weight", "timeout_s"}  # reward terms: the RewardSet's weight and timeout, not the term's


def group_options(group: str) -> list[str]:
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def targets_in(node, path="cfg"):
    """Every (path, options) dict with a _target_ in a config tree."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from targets_in(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from targets_in(value, f"{path}[{i}]")


def assert_targets_bind(cfg):
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("hydra", None)
    found = 0
    for path, options in targets_in(tree):
        target = get_object(options["_target_"])
        kwargs = {k: v for k, v in options.items() if k not in HYDRA_KEYS | NOT_CONSTRUCTOR_ARGS}
        signature = inspect.signature(target)
        try:
            # A partial (`_partial_: true`) gets its remaining arguments when it is called.
            (signature.bind_partial if options.get("_partial_") else signature.bind)(**kwargs)
        except TypeError as exc:
            raise AssertionError(f"{path}: {options['_target_']} does not accept {sorted(kwargs)}: {exc}") from exc
        found += 1
    assert found >= 8  # task, model, rewards, advantage, loss, sampler, curriculum, trainer, ...


EXPERIMENTS = group_options("experiment")


def test_there_are_experiments():
    assert "r1_zero" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_its_targets_bind(experiment):
    cfg = compose_config([f"+experiment={experiment}"])
    assert_targets_bind(cfg)


@pytest.mark.parametrize("group", ["task", "model", "reward", "advantage", "loss", "sampler", "curriculum",
                                   "trainer", "logger", "callbacks"])
def test_every_option_of_every_group_composes_and_binds(group):
    options = group_options(group)
    assert options, f"config group {group!r} has no options"
    for option in options:
        assert_targets_bind(compose_config([f"{group}={option}"] if group != "reward" else [f"reward=[{option}]"]))


def option_target(group: str, option: str) -> str:
    if group == "reward":
        return compose_config([f"reward=[{option}]"]).reward[option]._target_
    return compose_config([f"{group}={option}"])[group]._target_


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_registry_and_option_files_agree_both_ways(group):
    registry = REGISTRIES[group]
    options = group_options(group)
    for option in options:
        assert option in registry, f"conf/{group}/{option}.yaml has no registered {registry.kind} named {option!r}"
        assert option_target(group, option) == registry.entry(option).target
    for entry in registry:
        assert entry.name in options, f"registered {registry.kind} {entry.name!r} has no conf/{group}/{entry.name}.yaml"


def test_overrides_reach_the_components():
    cfg = compose_config(["+experiment=r1_zero", "loss.beta=0.0", "loss.eps=0.28", "sampler.group_size=16",
                          "trainer.max_steps=50", "seed=3", "reward.format.weight=0.5",
                          "model.name_or_path=/some/folder"])
    assert (cfg.loss.beta, cfg.loss.eps, cfg.sampler.group_size, cfg.trainer.max_steps, cfg.seed) == (0.0, 0.28, 16, 50, 3)
    assert cfg.reward.format.weight == 0.5 and cfg.model.name_or_path == "/some/folder"
    assert cfg.curriculum.seed == 3  # curricula follow the run seed


def test_unknown_option_lists_the_choices():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=r"(?s)Could not find 'advantage/nope'.*grpo"):
        compose_config(["advantage=nope"])


def test_the_binding_check_catches_a_misspelt_argument():
    with pytest.raises(AssertionError, match=r"cfg.sampler: r1lab.samplers.hf.HFSampler does not accept"):
        assert_targets_bind(compose_config(["+sampler.temprature=0.5"]))


def test_an_experiment_in_the_users_own_config_folder_runs_through_hydra_searchpath(tmp_path):
    from r1lab.testing import run_cli

    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "my_run.yaml").write_text(
        "# @package _global_\ndefaults:\n  - r1_zero\nseed: 1234\n")
    result = run_cli([f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "+experiment=my_run", "--cfg", "job"],
                     cwd=tmp_path)
    assert "seed: 1234" in result.stdout and "VLLMSampler" not in result.stdout
    wrong = run_cli([f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "+experiment=my_rnu", "--cfg", "job"],
                    cwd=tmp_path, check=False)
    assert wrong.returncode != 0 and "my_rnu" in wrong.stderr  # Hydra, which reads the folder, names the option
