"""Running untrusted Python (a policy's code) in a separate, locked-down process.

Layers, outermost first:
- bubblewrap (`bwrap`, where installed): new PID, network, IPC and UTS namespaces (and a user namespace
  when r1lab does not run as root; as root, the program runs as user `nobody`, since root is exempt from the
  process limit); a filesystem view of only the Python installation and system libraries (read-only) and the
  scratch folder (read-write, the working directory); a private /tmp; the process dies with its parent.
- without bubblewrap: `unshare --net --pid` where the kernel allows it (no network, its own PID namespace),
  and, when r1lab runs as root, the program runs as user `nobody` (`setpriv`).
- always: `python -I -S` (no site-packages, no environment), an empty environment, resource limits (CPU
  seconds, address space, file size, open files, processes, no core dumps), a wall-clock timeout after which
  the whole process group is killed, and output read up to a bound.

What it does not protect against is in the README ("The code sandbox").
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
ISOLATIONS = ("auto", "bwrap", "processes")


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0  # wall-clock time for the whole program
    cpu_s: int = 5  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 512  # address space (RLIMIT_AS)
    file_size_mb: int = 8  # largest file it may write (RLIMIT_FSIZE); output is capped by it too
    processes: int = 16  # processes beyond those its user already runs (RLIMIT_NPROC)
    open_files: int = 64  # RLIMIT_NOFILE
    output_chars: int = 20_000  # of stdout and stderr each, kept for the caller

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "file_size_mb", "processes", "open_files"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok" (exit status 0), "failed" (another exit status or a signal), "timeout"
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _works(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def available_isolation() -> str:
    """"bwrap" when bubblewrap runs here, else "processes"."""
    bwrap = shutil.which("bwrap")
    if bwrap and _works([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"]):
        return "bwrap"
    return "processes"


@functools.cache
def _unshare_prefix() -> tuple[str, ...]:
    unshare = shutil.which("unshare")
    for flags in (("--net", "--pid", "--fork", "--kill-child"),
                  ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child")):
        if unshare and _works([unshare, *flags, "true"]):
            return (unshare, *flags)
    return ()


@functools.cache
def _warn_weak_isolation() -> None:
    logging.getLogger("r1lab").warning(
        "code sandbox: neither bubblewrap nor unshare runs here, so sandboxed programs share the network and "
        "the process table (resource limits still apply); install bubblewrap (apt-get install bubblewrap)")


def _python() -> str:
    return os.path.realpath(sys.executable)  # a venv's python is a link to the base interpreter


def count_processes(uid: int) -> int:
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nUid:\t{uid}\t" in status.read_text():
                count += 1
        except OSError:
            continue
    return count


def _bwrap_command(scratch: Path, program: str, root: bool) -> list[str]:
    prefix = sys.base_prefix
    command = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for folder in ("/lib", "/lib64", "/bin"):
        command += ["--ro-bind-try", folder, folder]
    command += ["--ro-bind", prefix, prefix, "--bind", str(scratch), "/sandbox", "--chdir", "/sandbox",
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--die-with-parent", "--new-session"]
    if root:
        # Root is exempt from the process limit, inside a user namespace too (it still counts as root outside):
        # take every namespace but the user one, and run the program as user nobody.
        command += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                    "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    else:
        command += ["--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    return command + [_python(), "-I", "-S", f"/sandbox/{program}"]


def _limit(limits: Limits, nproc: int):
    """The child's resource limits, set between fork and exec."""

    def apply() -> None:
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


def run_python(source: str, limits: Limits = Limits(), isolation: str = "auto") -> Outcome:
    """Run `source` as a Python program in a fresh scratch folder under the sandbox; its outcome."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"sandbox isolation {isolation!r} is unknown; choose one of {', '.join(ISOLATIONS)}")
    if isolation == "auto":
        isolation = available_isolation()
    elif isolation == "bwrap" and available_isolation() != "bwrap":
        raise RuntimeError("sandbox isolation 'bwrap' needs bubblewrap, which does not run here "
                           "(apt-get install bubblewrap), or use isolation=auto")
    root = os.geteuid() == 0
    if isolation == "processes" and not _unshare_prefix():
        _warn_weak_isolation()
    with tempfile.TemporaryDirectory(prefix="r1lab-sandbox-") as folder:
        os.chmod(folder, 0o711)  # user nobody may pass through to its scratch folder, not list or read the rest
        scratch, logs = Path(folder) / "scratch", Path(folder) / "logs"
        scratch.mkdir()
        logs.mkdir(mode=0o700)
        (scratch / "main.py").write_text(source, encoding="utf-8")
        if root:
            os.chown(scratch, NOBODY, NOBODY)
            os.chown(scratch / "main.py", NOBODY, NOBODY)
        if isolation == "bwrap":
            command, owner = _bwrap_command(scratch, "main.py", root), NOBODY if root else os.getuid()
        elif root:  # the namespaces first (they need root), then user nobody for the program
            drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            command, owner = [*_unshare_prefix(), *drop, _python(), "-I", "-S", "main.py"], NOBODY
        else:
            command, owner = [*_unshare_prefix(), _python(), "-I", "-S", "main.py"], os.getuid()
        home = "/sandbox" if isolation == "bwrap" else str(scratch)  # where the scratch folder is, as it sees it
        nproc = count_processes(owner) + limits.processes  # a fork bomb gets this many, not the machine's
        started = time.monotonic()
        with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
            process = subprocess.Popen(command, cwd=scratch, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       env={"PATH": "/usr/bin:/bin", "HOME": home}, start_new_session=True,
                                       preexec_fn=_limit(limits, nproc))
            try:
                returncode = process.wait(timeout=limits.wall_s)
                status = "ok" if returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                _kill_group(process)
            returncode = process.returncode if status != "timeout" else -signal.SIGKILL
        return Outcome(status, returncode, _read(logs / "stdout", limits.output_chars),
                       _read(logs / "stderr", limits.output_chars), time.monotonic() - started)


def _kill_group(process: subprocess.Popen) -> None:
    """Whatever the program started in its process group goes with it (namespaces end with their first
    process as well)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read(path: Path, chars: int) -> str:
    with open(path, "rb") as handle:
        return handle.read(chars * 4).decode("utf-8", errors="replace")[:chars]
