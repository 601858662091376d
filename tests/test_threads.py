"""threads=auto (the default) takes only the cores no other process is busy on: torch threads that share a
core with a busy process collapse (up to 6x slower than one thread on a 2-core machine)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from r1lab.stages.run import idle_cores, torch_threads, usable_cores


def config(threads, devices=1, accelerator="cpu"):
    return OmegaConf.create({"threads": threads, "trainer": {"devices": devices, "accelerator": accelerator}})


def test_a_number_or_null_is_taken_as_given_and_a_bad_value_is_refused():
    assert torch_threads(config(3)) == 3
    assert torch_threads(config(None)) is None
    for bad in (0, -2, "many", 1.5):
        with pytest.raises(ValueError, match="threads=.*give a number of torch threads >= 1, auto"):
            torch_threads(config(bad))


def test_auto_leaves_out_a_core_that_another_process_keeps_busy():
    if usable_cores() < 2:
        pytest.skip("needs two cores to leave one out")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it take its core
        busy_one = idle_cores()
    finally:
        spinner.kill()
        spinner.wait()
    assert 1 <= busy_one <= usable_cores() - 1
    assert torch_threads(config("auto")) >= 1


def test_auto_shares_the_idle_cores_among_this_nodes_processes():
    assert torch_threads(config("auto", devices=64)) == 1  # never fewer than one each


def test_pytest_xdist_workers_share_the_cores_between_them(monkeypatch):
    from r1lab.testing import threads_per_test_process

    cores = os.cpu_count() or 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert threads_per_test_process() == cores  # no xdist: the whole machine
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert threads_per_test_process() == max(1, cores // 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(4 * cores))
    assert threads_per_test_process() == 1  # never none
