"""Running untrusted Python (a policy's code) in a separate, locked-down process.

Layers, outermost first:
- bubblewrap (`bwrap`, where installed): new PID, network, IPC and UTS namespaces (and a user namespace
  when r1lab does not run as root); a filesystem view of only the Python installation and system libraries
  (read-only), the program folder (read-only) and private tmpfs for the scratch folder (the working
  directory), /tmp and /dev/shm, each `scratch_mb` large; the process dies with its parent.
- without bubblewrap: `unshare --net --pid --mount-proc` where the kernel allows it (no network, its own PID
  namespace and /proc), and with the mount namespace, private tmpfs over the scratch folder and every
  world-writable place; otherwise whatever the program's user left behind is removed afterwards.
- always: as root, a user of its own per program (samples cannot reach each other; root is exempt from the
  process limit); `python -I -S` (no site-packages, no environment), an empty environment, resource limits
  (CPU seconds, address space, file size, open files, processes, no core dumps), a wall-clock timeout after
  which the whole process group is killed, and output read up to a bound. The program reports through a file
  descriptor of its own (`Outcome.report`); code judged by r1lab never decides its verdict here (see
  r1lab/tasks/code_judge.py).

What it does not protect against is in the README ("The code sandbox").
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534  # the user of a program when r1lab does not run as root (inside bubblewrap's user namespace)
SANDBOX_UIDS = range(1_000_000, 1_000_000_000)  # as root, each program runs as a user drawn from here
ISOLATIONS = ("auto", "bwrap", "processes")
WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0  # wall-clock time for the whole program
    cpu_s: int = 5  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 512  # address space (RLIMIT_AS)
    file_size_mb: int = 8  # largest file it may write (RLIMIT_FSIZE); output is capped by it too
    processes: int = 16  # processes beyond those its user already runs (RLIMIT_NPROC)
    open_files: int = 64  # RLIMIT_NOFILE
    scratch_mb: int = 64  # size of its scratch folder, and of each private /tmp, /dev/shm (tmpfs)
    output_chars: int = 20_000  # of stdout and stderr each, kept for the caller
    report_chars: int = 4_000_000  # of its report channel

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "file_size_mb", "processes", "open_files", "scratch_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok" (exit status 0), "failed" (another exit status or a signal), "timeout"
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    report: str = ""  # what the program wrote to its report channel

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


@dataclass(frozen=True)
class Namespaces:
    prefix: tuple[str, ...]  # the `unshare` command line that runs here, () when none does
    mounts: bool  # with a mount namespace: private tmpfs scratch, /tmp, /dev/shm ... and a private /proc


@functools.cache
def _namespaces() -> Namespaces:
    unshare = shutil.which("unshare")
    if not unshare:
        return Namespaces((), False)
    core = ("--net", "--pid", "--fork", "--kill-child")
    as_user = ("--user", "--map-root-user")
    for flags, mounts in (((*core, "--mount-proc"), True), ((*as_user, *core, "--mount-proc"), True),
                          (core, False), ((*as_user, *core), False)):
        probe = ["sh", "-c", "mount -t tmpfs -o size=64k r1lab /tmp"] if mounts else ["true"]
        if _works([unshare, *flags, *probe]):
            return Namespaces((unshare, *flags), mounts)
    return Namespaces((), False)


def writable_places() -> list[str]:
    """Folders every user may write to here: where a sandboxed program could leave files behind."""
    return [d for d in WRITABLE if os.path.isdir(d) and not os.path.islink(d)]


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


def _drop_to(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def _bwrap_command(program: Path, limits: Limits, root: bool, uid: int) -> list[str]:
    prefix, size = sys.base_prefix, str(limits.scratch_mb * 1024 * 1024)
    command = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for folder in ("/lib", "/lib64", "/bin"):
        command += ["--ro-bind-try", folder, folder]
    command += ["--ro-bind", prefix, prefix, "--ro-bind", str(program), "/program",
                "--perms", "0777", "--size", size, "--tmpfs", "/sandbox", "--chdir", "/sandbox",
                "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm",
                "--perms", "1777", "--size", size, "--tmpfs", "/tmp", "--die-with-parent", "--new-session"]
    if root:
        # Root is exempt from the process limit, inside a user namespace too (it still counts as root outside):
        # take every namespace but the user one, and run the program as a user of its own.
        return command + ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                          *_drop_to(uid)]
    return command + ["--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]


def _process_command(scratch: Path, limits: Limits, root: bool, uid: int, mounts: bool) -> list[str]:
    """The process-level layer: namespaces where the kernel allows them; with a mount namespace, the scratch
    folder and every world-writable folder become private tmpfs of `scratch_mb` each (nothing written there
    outlives the program) and /proc shows only the program's own processes."""
    command = list(_namespaces().prefix)
    if mounts:
        # The program's folders live under /tmp, which a private tmpfs is about to cover: the shell keeps the
        # real folder as its working directory, covers the writable places, and binds the folder back.
        kb, folder = limits.scratch_mb * 1024, shlex.quote(str(scratch.parent))
        owner = f",uid={uid},gid={uid}" if root else ""
        steps = [f"cd {folder}", f"mount -t tmpfs -o size={kb}k,mode=0700{owner} r1lab {scratch.name}",
                 *(f"mount -t tmpfs -o size={kb}k,mode=1777 r1lab {shlex.quote(d)}" for d in writable_places()),
                 f"mkdir -p {folder}", f"mount --no-canonicalize --rbind . {folder}",
                 f"cd {shlex.quote(str(scratch))}", 'exec "$@"']
        command += ["sh", "-c", "set -e; " + "; ".join(steps), "r1lab-sandbox"]
    return command + (_drop_to(uid) if root else [])


def _remove_leftovers(uid: int) -> None:
    """Without a mount namespace: whatever the program's own user left running or wrote to a world-writable
    folder goes (that user is this program's alone, so nothing else is touched)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nUid:\t{uid}\t" in status.read_text():
                os.kill(int(status.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue
    for place in writable_places():
        for entry in Path(place).iterdir():
            try:
                if entry.lstat().st_uid != uid:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
            except OSError:
                continue


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


def run_python(source: str, limits: Limits = Limits(), isolation: str = "auto",
               files: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> Outcome:
    """Run `source` as a Python program under the sandbox; its outcome.

    The program is `main.py` in a read-only program folder (with `files` beside it), run as
    `main.py <report fd> *args` with the working directory a fresh, empty scratch folder. File descriptor
    `<report fd>` is the report channel: what the program writes there comes back as `Outcome.report`.
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"sandbox isolation {isolation!r} is unknown; choose one of {', '.join(ISOLATIONS)}")
    if isolation == "auto":
        isolation = available_isolation()
    elif isolation == "bwrap" and available_isolation() != "bwrap":
        raise RuntimeError("sandbox isolation 'bwrap' needs bubblewrap, which does not run here "
                           "(apt-get install bubblewrap), or use isolation=auto")
    root = os.geteuid() == 0
    mounts = isolation == "processes" and _namespaces().mounts
    if isolation == "processes" and not _namespaces().prefix:
        _warn_weak_isolation()
    # As root, each program runs as a user of its own: samples run at once cannot reach each other's files or
    # processes, and what it leaves behind can be found by owner.
    uid = secrets.randbelow(SANDBOX_UIDS.stop - SANDBOX_UIDS.start) + SANDBOX_UIDS.start if root else os.getuid()
    with tempfile.TemporaryDirectory(prefix="r1lab-sandbox-") as folder:
        os.chmod(folder, 0o711)  # the program's user may pass through to its folders, not list or read the rest
        program, scratch, logs = (Path(folder) / name for name in ("program", "scratch", "logs"))
        for path in (program, scratch, logs):
            path.mkdir(mode=0o700)
        for name, text in {**(files or {}), "main.py": source}.items():
            (program / name).write_text(text, encoding="utf-8")
        if root:
            for path in (program, scratch, *program.iterdir()):
                os.chown(path, uid, uid)
        inside = {"program": "/program", "scratch": "/sandbox"} if isolation == "bwrap" else {
            "program": str(program), "scratch": str(scratch)}
        with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err, \
                open(logs / "report", "wb") as report:
            python = [_python(), "-I", "-S", f"{inside['program']}/main.py", str(report.fileno()), *args]
            if isolation == "bwrap":
                command = _bwrap_command(program, limits, root, uid) + python
            else:
                command = _process_command(scratch, limits, root, uid, mounts) + python
            nproc = (0 if root else count_processes(uid)) + limits.processes  # a fork bomb gets this many
            started = time.monotonic()
            process = subprocess.Popen(command, cwd=scratch, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       env={"PATH": "/usr/bin:/bin", "HOME": inside["scratch"]},
                                       start_new_session=True, pass_fds=(report.fileno(),),
                                       preexec_fn=_limit(limits, nproc))
            try:
                returncode = process.wait(timeout=limits.wall_s)
                status = "ok" if returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                _kill_group(process)
            returncode = process.returncode if status != "timeout" else -signal.SIGKILL
        if root and not mounts and isolation != "bwrap":
            _remove_leftovers(uid)
        return Outcome(status, returncode, _read(logs / "stdout", limits.output_chars),
                       _read(logs / "stderr", limits.output_chars), time.monotonic() - started,
                       _read(logs / "report", limits.report_chars))


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
