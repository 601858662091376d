"""`python -m r1lab list [kind]`: registered components per kind, with where each comes from."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from r1lab.plugins import load_plugins
from r1lab.registry import REGISTRIES, RegistryError, registry_for


def list_components(args: list[str]) -> int:
    console = Console()
    state = load_plugins()
    try:
        kinds = [registry_for(a) for a in args] if args else list(REGISTRIES.values())
    except RegistryError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    for registry in kinds:
        table = Table(title=f"{registry.group} ({registry.kind})", title_justify="left")
        table.add_column("name")
        table.add_column("from")
        table.add_column("description")
        for entry in registry:
            name = entry.name + (f" ({', '.join(entry.aliases)})" if entry.aliases else "")
            table.add_row(name, entry.distribution, entry.description)
        console.print(table)
    plugins = ", ".join(f"{p.plugin.name} ({p.distribution} {p.version})" for p in state.loaded) or "none"
    console.print(f"plugins: {plugins}" + (f"; disabled: {', '.join(state.disabled)}" if state.disabled else ""))
    return 0
