"""The run header: what ran, with which components, plugins and versions."""

from __future__ import annotations

import platform
from importlib import metadata
from collections.abc import Sequence

import torch
import transformers
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from r1lab.runs.run_log import plain_text, to_file

console = Console()


def r1lab_version() -> str:
    # From the installed distribution's metadata: importing the `r1lab` package here would run it in a circle
    # (its __init__ imports this package for the config resolvers).
    try:
        return metadata.version("r1lab")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def reward_term(name: str, term: DictConfig) -> str:
    """`name×weight`; a plain function (TRL-style, `_partial_: true`) says so, with its import path."""
    shown = f"{name}×{term.get('weight', 1.0)}"
    return shown + (f" (function {term._target_})" if term.get("_partial_") else "")


def print_run_header(cfg: DictConfig, plugins: PluginState, run_dir: str, model_source: str,  # noqa: F821
                     resumed: str | None = None, warnings: Sequence[str] = ()) -> None:
    """`plugins`: r1lab.plugins.PluginState (not imported here: r1lab.plugins imports this package's errors)."""
    table = Table(title=f"r1lab {r1lab_version()}", show_header=False, title_justify="left")
    table.add_row("run dir", run_dir)
    if resumed:
        table.add_row("resumed", resumed)
    for warning in warnings:  # e.g. a resume from a fallback checkpoint, or into another task
        table.add_row("[bold red]warning[/]", f"[bold red]{escape(warning)}[/]")
    table.add_row("model", model_source)
    table.add_row("task", f"{cfg.task.get('name', '?')} ({cfg.task._target_})")
    table.add_row("reward", ", ".join(reward_term(name, term) for name, term in cfg.reward.items() if term))
    for group in ("advantage", "loss", "sampler", "curriculum"):
        table.add_row(group, str(cfg[group]._target_).rsplit(".", 1)[-1])
    loaded = ", ".join(f"{p.plugin.name} ({p.distribution} {p.version})" for p in plugins.loaded) or "none"
    table.add_row("plugins", loaded)
    if plugins.disabled:
        table.add_row("disabled", ", ".join(plugins.disabled))
    if plugins.failed:
        table.add_row("failed", ", ".join(plugins.failed))
    table.add_row("versions", f"python {platform.python_version()}, torch {torch.__version__}, "
                              f"transformers {transformers.__version__}")
    console.print(table)
    to_file("run header\n" + plain_text(table))
