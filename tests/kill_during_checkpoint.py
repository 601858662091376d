"""`python tests/kill_during_checkpoint.py ARGS`: `python -m r1lab ARGS` with a fault in its K-th checkpoint
write (K from R1LAB_TEST_FAULT_AT_SAVE): the process SIGKILLs itself with half of the real bytes written and
flushed. The fault-injection tests use it to hit checkpoint writes exactly (a full disk is tested for real, on
a small tmpfs: tests/test_bad_input.py)."""

import io
import os
import signal
import sys

import torch

from r1lab.cli import main

FAULT_AT = int(os.environ["R1LAB_TEST_FAULT_AT_SAVE"])
real_save = torch.save
saves = 0


def save_then_die(obj, f, *args, **kwargs):
    global saves
    saves += 1
    if saves < FAULT_AT or isinstance(f, (str, os.PathLike)):
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)


torch.save = save_then_die
main(sys.argv[1:])
