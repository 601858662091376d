"""r1lab: an experiment platform for DeepSeek-R1 / R1-Zero style RL with verifiable rewards.

The root holds the entry points (cli, train, __main__, trainer, testing) and the core types every part uses
(registry, plugins, rollout); everything else lives in a package named for its job (README, "Layout").
"""

__version__ = "0.1.0"

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Modules that moved from the root into packages: the old import paths (a plugin's imports, a saved config's
# `_target_`) keep working, with a DeprecationWarning that names the new path.
MOVED = {f"r1lab.{name}": f"r1lab.{package}.{name}" for package, names in {
    "judging": ("answers", "equations", "language", "selfcheck", "template", "sandbox", "diagnostics"),
    "runs": ("run_dir", "checkpointing", "paths", "jsonl", "scalars", "errors", "run_log", "header"),
    "engines": ("strategies", "distributed", "patches", "precision"),
    "reporting": ("report", "sweep_report", "listing"),
    "commandline": ("choices", "preflight", "sweep_jobs"),
}.items() for name in names}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path (`r1lab.answers`) as the module at its new one (`r1lab.judging.answers`)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}: import it from there", DeprecationWarning,
                      stacklevel=3)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """The module at the new path has run already."""


if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(MovedModules())

from r1lab.runs import paths as _paths  # noqa: E402,F401 - registers the ${r1lab_data_dir:} resolver configs use
from r1lab.runs import run_dir as _run_dir  # noqa: E402,F401 - and ${r1lab_log_name:}, each process's log file
