"""`python tests/kill_during_checkpoint.py ARGS`: `python -m r1lab ARGS` with a fault in its K-th checkpoint
write (K from R1LAB_TEST_FAULT_AT_SAVE). R1LAB_TEST_FAULT=kill (the default): the process SIGKILLs itself with
half of the real bytes written and flushed; =disk_full: the write fails as on a full disk (ENOSPC). The
fault-injection tests use it to hit checkpoint writes exactly."""

import errno
import io
import os
import signal
import sys

import torch

from r1lab.cli import main

FAULT_AT = int(os.environ["R1LAB_TEST_FAULT_AT_SAVE"])
FAULT = os.environ.get("R1LAB_TEST_FAULT", "kill")
real_save = torch.save
saves = 0


def save_then_die(obj, f, *args, **kwargs):
    global saves
    saves += 1
    if saves < FAULT_AT or isinstance(f, (str, os.PathLike)):
        return real_save(obj, f, *args, **kwargs)
    if FAULT == "disk_full":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)


torch.save = save_then_die
main(sys.argv[1:])
