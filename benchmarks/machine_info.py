"""What the benchmarks record about the machine they ran on (shared by the benchmark scripts)."""

from __future__ import annotations

import importlib
import os
import platform


def describe_machine(threads: int, packages: tuple[str, ...] = ("torch", "transformers")) -> dict:
    """Platform, cores, the torch thread count used, the load average at the start, and package versions."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": threads, "load_average_at_start": os.getloadavg(),
            "python": platform.python_version()}
    return info | {name: importlib.import_module(name).__version__ for name in packages}
