"""`python -m r1lab list [kind or group ...]`: registered components per kind, and every config group's
options, each with where it comes from (r1lab or the plugin that provides it)."""

from __future__ import annotations

import difflib
import inspect
from importlib.resources import files
from pathlib import Path

import os

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from r1lab.plugins import config_options, load_plugins, plugin_config_sources
from r1lab.registry import REGISTRIES, Registry

SKIPPED_GROUPS = ("hydra",)  # Hydra's own groups (launchers): documented in the README's sweep section


def group_options() -> dict[str, list[tuple[str, str, str]]]:
    """Config group → (option, origin, description) for r1lab's conf and every loaded plugin's; the
    description is the option file's leading comment."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for origin, source in [("r1lab", "pkg://r1lab.conf"), *plugin_config_sources()]:
        for group, options in config_options(source).items():
            if group.split("/")[0] in SKIPPED_GROUPS:
                continue
            for option in sorted(options):
                out.setdefault(group, []).append((option, origin, first_comment(source, group, option)))
    return dict(sorted(out.items()))


def first_comment(source: str, group: str, option: str) -> str:
    root = files(source[len("pkg://"):]) if source.startswith("pkg://") else Path(source)
    text = root.joinpath(*group.split("/"), f"{option}.yaml").read_text(encoding="utf-8")
    lines = []  # the leading comment block, however many lines the file wraps it over
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        if "@package" not in line:
            lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def kind_of(obj: object) -> str:
    """A class, or a plain function (a TRL-style reward: f(prompts, completions, **columns) -> list of floats)."""
    return "class" if inspect.isclass(obj) else "function" if inspect.isfunction(obj) else type(obj).__name__


def registry_table(registry: Registry) -> Table:
    table = Table(title=f"{registry.group} ({registry.kind})", title_justify="left")
    for column in ("name", "from", "type", "description"):
        table.add_column(column)
    for entry in registry:
        name = entry.name + (f" ({', '.join(entry.aliases)})" if entry.aliases else "")
        table.add_row(*map(escape, (name, entry.distribution, kind_of(entry.obj), entry.description)))
    return table


def group_table(group: str, options: list[tuple[str, str, str]]) -> Table:
    table = Table(title=f"{group} (config group: {group}=NAME{' or +experiment=NAME' if group == 'experiment' else ''})",
                  title_justify="left")
    for column in ("option", "from", "description"):
        table.add_column(column)
    for option, origin, description in options:
        table.add_row(*map(escape, (option, origin, description)))  # "r1lab[deepspeed]" is not markup
    return table


def listing_console() -> Console:
    """The terminal's width on a terminal; piped or redirected (no terminal to fit), wide enough that a
    description stays on one line, unless COLUMNS says otherwise."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=240)


def list_components(args: list[str]) -> int:
    console = listing_console()
    state = load_plugins()
    groups = group_options()
    registries = {registry.group: registry for registry in REGISTRIES.values()}
    aliases = {registry.kind: registry.group for registry in REGISTRIES.values()}
    wanted = [aliases.get(a, a) for a in args] if args else [*registries, *(g for g in groups if g not in registries)]
    unknown = [a for a in wanted if a not in registries and a not in groups]
    if unknown:
        choices = sorted(set(registries) | set(groups))
        close = difflib.get_close_matches(unknown[0], choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        console.print(f"[red]error:[/red] nothing to list called {', '.join(map(repr, unknown))}.{hint} Kinds and "
                      f"config groups: {', '.join(choices)}")
        return 2
    for name in wanted:
        console.print(registry_table(registries[name]) if name in registries else group_table(name, groups[name]))
    plugins = ", ".join(f"{p.plugin.name} ({p.distribution} {p.version})" for p in state.loaded) or "none"
    console.print(f"plugins: {plugins}" + (f"; disabled: {', '.join(state.disabled)}" if state.disabled else ""))
    return 0
