"""Plugin discovery: distributions that advertise an `r1lab.plugins` entry point.

A plugin's entry point names a `Plugin` manifest (cheap to import). Loading a plugin imports its component
modules (which register themselves) and adds its config package to Hydra's search path, so its option files
become choices of the usual config groups (`reward=[accuracy,length_penalty]`).

Habits borrowed from pluggy/pytest: `R1LAB_DISABLE_PLUGINS=a,b` skips plugins before they are imported (by
entry-point or distribution name; a name that matches none is a warning); a plugin that fails to load is a
warning naming it, or an error when `R1LAB_STRICT_PLUGINS=1` (CI sets it); an option file that two sources
provide is a warning.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from r1lab.runs.errors import RunError
from r1lab.registry import registering_for

ENTRY_POINT_GROUP = "r1lab.plugins"
DISABLE_ENV = "R1LAB_DISABLE_PLUGINS"
STRICT_ENV = "R1LAB_STRICT_PLUGINS"

# Core component modules; importing them fills the registries.
CORE_MODULES = (
    "r1lab.rewards.accuracy",
    "r1lab.rewards.format",
    "r1lab.rewards.overlong",
    "r1lab.rewards.code_exec",
    "r1lab.rewards.countdown",
    "r1lab.rl.advantages",
    "r1lab.rl.losses",
    "r1lab.samplers.hf",
    "r1lab.samplers.vllm",  # imports vllm only when used
    "r1lab.curricula.uniform",
    "r1lab.curricula.difficulty",
    "r1lab.curricula.pass_rate",
)


@dataclass(frozen=True)
class Plugin:
    """What a plugin's entry point points at."""

    name: str
    conf: str | None = None  # a Hydra config source, e.g. "pkg://r1lab_length_penalty.conf"
    modules: tuple[str, ...] = ()  # imported on load; they register components


@dataclass
class LoadedPlugin:
    plugin: Plugin
    distribution: str
    version: str


@dataclass
class PluginState:
    loaded: list[LoadedPlugin] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error


class PluginLoadError(RunError):
    """A plugin failed to load in strict mode (R1LAB_STRICT_PLUGINS=1): its message is the whole story."""


_state: PluginState | None = None


def disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def normalized(name: str) -> str:
    """Distribution names compare as packaging does: case, '-', '_' and '.' do not matter."""
    return name.lower().replace("_", "-").replace(".", "-")


def names_of(ep) -> set[str]:
    """What R1LAB_DISABLE_PLUGINS may call a plugin: its entry-point name or its distribution's name (the one
    in its pyproject.toml, e.g. r1lab-length-penalty)."""
    return {normalized(ep.name)} | ({normalized(ep.dist.name)} if ep.dist else set())


def config_options(source: str) -> dict[str, set[str]]:
    """Config group → option names in a config source (`pkg://package` or a folder): the group folders'
    .yaml files, nested groups as `hydra/launcher`."""
    if source.startswith("pkg://"):
        from importlib.resources import files

        root = files(source[len("pkg://"):])
    else:
        from pathlib import Path

        root = Path(source.removeprefix("file://"))
    options: dict[str, set[str]] = {}

    def walk(folder, group: str) -> None:
        for child in folder.iterdir():
            if child.is_dir() and not child.name.startswith(("_", ".")):
                walk(child, f"{group}/{child.name}" if group else child.name)
            elif group and child.name.endswith(".yaml"):
                options.setdefault(group, set()).add(child.name[:-len(".yaml")])

    walk(root, "")
    return options


def warn_about_clashes(state: PluginState) -> None:
    """A plugin option file named like r1lab's or another plugin's: Hydra takes the first on its search path
    (r1lab's, then plugins in name order) and the other is never used; say so."""
    seen: dict[tuple[str, str], str] = {}
    sources = [("r1lab", "pkg://r1lab.conf")] + [(lp.plugin.name, lp.plugin.conf) for lp in state.loaded if lp.plugin.conf]
    for origin, source in sources:
        try:
            found = config_options(source)
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
            continue  # a plugin whose config package is missing fails where Hydra reads it
        for group, options in found.items():
            for option in sorted(options):
                first = seen.setdefault((group, option), origin)
                if first != origin:
                    warnings.warn(f"r1lab plugin {origin!r} provides {group}={option}, which {first!r} provides too; "
                                  f"{group}={option} means {first!r}'s (the first on the search path): rename one",
                                  stacklevel=3)


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() in {"1", "true", "yes"}


def load_plugins(*, reload: bool = False) -> PluginState:
    """Import core components and every enabled plugin, once per process (unless `reload`)."""
    global _state
    if _state is not None and not reload:
        return _state
    for module in CORE_MODULES:
        importlib.import_module(module)
    state = PluginState()
    skip = {normalized(n): n for n in disabled_names()}
    installed = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for ep in installed:
        if names_of(ep) & set(skip):
            state.disabled.append(ep.name)
            continue
        try:
            plugin = ep.load()
            if not isinstance(plugin, Plugin):
                raise TypeError(f"entry point {ep.value!r} must name an r1lab.plugins.Plugin, got {type(plugin)}")
            with registering_for(plugin.name):
                for module in plugin.modules:
                    importlib.import_module(module)
        except Exception as exc:  # a broken plugin must not take the platform down unless strict
            message = f"r1lab plugin {ep.name!r} failed to load: {type(exc).__name__}: {exc}"
            if strict():
                raise PluginLoadError(f"{message} (strict mode: {STRICT_ENV}=1)") from exc
            warnings.warn(f"{message}; continuing without it", stacklevel=2)
            state.failed[ep.name] = str(exc)
            continue
        dist = ep.dist
        state.loaded.append(LoadedPlugin(plugin, dist.name if dist else "?", dist.version if dist else "?"))
    unknown = sorted(given for key, given in skip.items() if not any(key in names_of(ep) for ep in installed))
    if unknown:
        choices = ", ".join(f"{ep.name} ({ep.dist.name})" if ep.dist else ep.name for ep in installed) or "none"
        warnings.warn(f"{DISABLE_ENV} names no installed plugin: {', '.join(unknown)}; installed plugins (entry "
                      f"point, distribution): {choices}", stacklevel=2)
    warn_about_clashes(state)
    _state = state
    return state


def plugin_config_sources() -> list[tuple[str, str]]:
    """(provider, path) pairs for Hydra's search path: one per loaded plugin with a config package."""
    return [(lp.plugin.name, lp.plugin.conf) for lp in load_plugins().loaded if lp.plugin.conf]


class R1labPluginsSearchPath(SearchPathPlugin):
    """Appends each loaded plugin's config package to Hydra's search path, and r1lab's own when the primary
    config lives elsewhere (a sweep file: `python -m r1lab -m -cd sweeps -cn aha` builds on `config`)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == "pkg://r1lab.conf" for element in search_path.get_path()):
            search_path.append(provider="r1lab", path="pkg://r1lab.conf")
        for provider, path in plugin_config_sources():
            search_path.append(provider=f"r1lab-plugin-{provider}", path=path)


def register_search_path() -> None:
    """Make Hydra see the plugins' config groups. Call before `@hydra.main` runs (and in tests).

    Registered by hand instead of through the `hydra_plugins` namespace, which misses editable installs.
    """
    Plugins.instance().register(R1labPluginsSearchPath)
