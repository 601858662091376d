import pytest

from conftest import run_cli
from r1lab.registry import CORE, REWARDS, Registry, RegistryError, registering_for, registry_for


class Alpha:
    """Alpha estimator: first line is the description.

    More text.
    """


class Beta:
    pass


def test_lookup_by_name_and_alias_with_descriptions():
    registry = Registry("widget", "widget")
    registry.register("alpha", aliases=("a",))(Alpha)
    assert registry.get("alpha") is Alpha and registry.get("a") is Alpha
    entry = registry.entry("alpha")
    assert entry.description == "Alpha estimator: first line is the description."
    assert entry.distribution == CORE and entry.target == f"{__name__}.Alpha"


def test_unknown_name_suggests_close_matches_and_lists_choices():
    registry = Registry("widget", "widget")
    registry.add("alpha", Alpha)
    registry.add("beta", Beta)
    with pytest.raises(RegistryError, match=r"Unknown widget 'alpah'\. Did you mean 'alpha'\? Available: alpha, beta\."):
        registry.get("alpah")
    with pytest.raises(RegistryError, match="Unknown component kind 'rewards'. Did you mean 'reward'"):
        registry_for("rewards")


def test_duplicate_names_are_an_error_naming_both_sides():
    registry = Registry("widget", "widget")
    registry.add("alpha", Alpha)
    registry.add("alpha", Alpha)  # the same object again (a re-import) is fine
    with pytest.raises(RegistryError, match=r"'alpha' is registered twice: by r1lab .*Alpha.* and by r1lab .*Beta"):
        registry.add("alpha", Beta)


def test_core_wins_a_name_clash_with_a_plugin():
    registry = Registry("widget", "widget")
    registry.add("alpha", Alpha)
    with registering_for("someplugin"), pytest.warns(UserWarning, match="keeping r1lab's"):
        registry.add("alpha", Beta)
    assert registry.get("alpha") is Alpha
    assert registry.ignored_clashes == [("alpha", "someplugin")]
    with registering_for("someplugin"):
        registry.add("gamma", Beta)
    assert registry.entry("gamma").distribution == "someplugin"


def test_list_command_prints_components_with_their_origin(tmp_path):
    out = run_cli(["list", "reward"], cwd=tmp_path).stdout
    assert "accuracy" in out and "format" in out and "r1lab" in out
    assert "advantage" not in out  # only the kind asked for
    everything = run_cli(["list"], cwd=tmp_path).stdout
    for kind in ("reward", "advantage", "loss", "sampler", "curriculum"):
        assert kind in everything
    bad = run_cli(["list", "rewardz"], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Did you mean 'reward'" in bad.stdout


def test_core_registries_are_filled():
    from r1lab.plugins import load_plugins

    load_plugins()
    assert {"accuracy", "format"} <= set(REWARDS.names())
