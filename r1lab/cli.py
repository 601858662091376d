"""`python -m r1lab ...`: `list [kind]` prints components, `report <run dir>` writes plots and a summary,
`eval model=<path> task=<name> n=<samples>` evaluates a model (a Hydra run of `stage=eval`); anything else
is a Hydra run of the configured stage (r1lab/train.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from r1lab.commandline.choices import group_options, unknown_choice_errors
from r1lab.runs.errors import RunError, reported
from r1lab.engines.patches import run_hydra_app
from r1lab.plugins import load_plugins, register_search_path
from r1lab.commandline.preflight import config_errors, resume_errors, run_dir_errors
from r1lab.runs.run_dir import is_first_process
from r1lab.commandline.sweep_jobs import sweep_summary

OWN_CONFIG_FLAGS = ("-cp", "-cn", "-cd", "--config-path", "--config-name", "--config-dir")
EVAL_SHORTCUTS = {"n": "stage.n", "limit": "stage.limit", "temperature": "stage.temperature", "top_p": "stage.top_p",
                  "greedy": "stage.greedy", "max_new_tokens": "stage.max_new_tokens"}


def eval_overrides(args: Sequence[str]) -> list[str]:
    """`eval model=<path|option> task=<name> n=<samples> [k=1,8] [limit=..] [key=value ...]` → Hydra overrides."""
    overrides = ["stage=eval"]
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "model" and value not in group_options("model"):
            overrides += ["model=hf", f"model.name_or_path={value}"]
        elif key == "k":
            overrides.append(f"stage.ks=[{value}]")
        elif key in EVAL_SHORTCUTS:
            overrides.append(f"{EVAL_SHORTCUTS[key]}={value}")
        else:
            overrides.append(arg)
    return overrides


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "list":
        from r1lab.reporting.listing import list_components

        with reported():  # a plugin that fails in strict mode: one paragraph, exit status 2
            sys.exit(list_components(argv[1:]))
    if argv and argv[0] == "report":
        from r1lab.reporting.report import main as report

        sys.exit(report(argv[1:]))
    with reported():
        load_plugins()
    register_search_path()
    if argv and argv[0] == "eval":
        argv = eval_overrides(argv[1:])
    # Before Hydra starts a job (and writes into the run directory): nothing is touched by a run that stops here.
    errors = unknown_choice_errors([a for a in argv if not a.startswith("-")])
    own_config = any(a.split("=")[0] in OWN_CONFIG_FLAGS for a in argv)  # a sweep file or a saved config
    if not own_config:
        errors = errors or config_errors(argv)
    if is_first_process():  # the other ranks of a run share its directory (and its lock)
        errors = errors or run_dir_errors(argv) or resume_errors(argv)  # only then: it creates the directory
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    from r1lab.train import main as hydra_app

    run_hydra_app(hydra_app, argv)
    sys.exit(sweep_summary())
