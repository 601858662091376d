"""`python -m r1lab ...`: `list [kind]` prints components, `report <run dir>` writes plots and a summary,
`eval model=<path> task=<name> n=<samples>` evaluates a model (a Hydra run of `stage=eval`); anything else
is a Hydra training run."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from r1lab.choices import unknown_choice_errors
from r1lab.plugins import load_plugins, register_search_path


@hydra.main(version_base="1.3", config_path="pkg://r1lab.conf", config_name="config")
def hydra_train(cfg: DictConfig) -> float | None:
    from r1lab.train import train  # heavy imports after Hydra has parsed the command line

    return train(cfg)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "list":
        from r1lab.listing import list_components

        sys.exit(list_components(argv[1:]))
    if argv and argv[0] == "report":
        from r1lab.report import main as report

        sys.exit(report(argv[1:]))
    load_plugins()
    register_search_path()
    if argv and argv[0] == "eval":
        from r1lab.evaluation import eval_overrides

        argv = eval_overrides(argv[1:])
    errors = unknown_choice_errors([a for a in argv if not a.startswith("-")])
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    hydra_train()
