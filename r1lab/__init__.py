"""r1lab: an experiment platform for DeepSeek-R1 / R1-Zero style RL with verifiable rewards."""

__version__ = "0.1.0"

from r1lab import paths as _paths  # noqa: E402,F401 - registers the ${r1lab_data_dir:} resolver configs use
from r1lab import run_dir as _run_dir  # noqa: E402,F401 - and ${r1lab_log_name:}, each process's log file
