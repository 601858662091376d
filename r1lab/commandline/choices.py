"""Check config-group choices on the command line before Hydra composes, for a message that lists options.

Hydra lists the options of a group only for a single choice (`advantage=nope`); for a list
(`reward=[accuracy,nope]`) it says just "Could not load". This check covers both, sweeps included.
"""

from __future__ import annotations

import difflib

from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException


def _chosen_names(override) -> list[str]:
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    names: list[str] = []
    for value in values:
        names.extend(value if isinstance(value, list) else [value])
    return [n for n in names if isinstance(n, str)]


def unknown_choice_errors(overrides: list[str]) -> list[str]:
    """One message per unknown option in a config-group override; [] when all are known."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []  # malformed overrides: Hydra's own parser error is the clearer message
    if any(override.key_or_group == "hydra.searchpath" for override in parsed):
        return []  # options from the user's own config folders: Hydra, which reads them, checks the choices
    errors = []
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = set(loader.list_groups(""))
        for override in parsed:
            group = override.key_or_group
            if group not in groups or override.is_delete():
                continue
            options = sorted(loader.get_group_options(group))
            for name in _chosen_names(override):
                if name not in options:
                    close = difflib.get_close_matches(name, options, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    errors.append(f"unknown {group} option {name!r}.{hint} Available: {', '.join(options)}. "
                                  f"(Plugins add options: python -m r1lab list {group})")
    return errors


def group_options(group: str) -> list[str]:
    """The options of a config group (plugins' included once they are loaded)."""
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
