"""Run untrusted generated code against its tests in a resource-limited subprocess (HumanEval).

Each program runs in a fresh ``python -I`` process (the current interpreter) in its own temporary
working directory, in a new session whose whole process group is SIGKILLed on timeout. The child
sets its own limits before the program starts: address space, file size (which also caps its
captured output), CPU time, process count and no core dumps. The limits are set by the runner at
the top of the child rather than in ``preexec_fn``, which CPython documents as unsafe when the
parent has threads (`run_many` drives each subprocess from a thread). A "reliability guard" then
replaces the dangerous parts of the standard library (fork, exec, spawn, subprocess, kill, file
removal and renaming, sockets) with functions that raise PermissionError. This stops accidents,
not a determined attacker (ctypes can still reach libc); ``RLIMIT_NPROC`` adds a real fork limit
for non-root users but root is exempt from it.

A pass is never inferred from the exit code alone: after ``check(entry_point)`` returns, the
runner writes a random nonce and the verdict to a private pipe, so a program that calls
``sys.exit(0)`` or ``os._exit(0)`` before the tests run grades as an error.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ExecStatus = Literal["passed", "failed", "timeout", "error"]

#: Address-space limit of the child (bytes); far above what HumanEval needs, low enough to bound it.
MEMORY_LIMIT_BYTES = 2 * 1024**3
#: Largest file the child may write, its stdout and stderr included (bytes).
FILE_SIZE_LIMIT_BYTES = 16 * 1024**2
#: How much of the end of the child's stderr is kept as the result's detail (characters).
DETAIL_CHARS = 2000
_READ_CAP_BYTES = 64 * 1024

# The child's main program. argv: marker fd, memory bytes, file-size bytes, CPU seconds.
# stdin: the nonce on the first line, then the source to run.
_RUNNER = r"""
import sys


def _limit():
    import resource
    memory, fsize, cpu = (int(arg) for arg in sys.argv[2:5])
    for name, soft, hard in (
        ("RLIMIT_AS", memory, memory), ("RLIMIT_FSIZE", fsize, fsize),
        ("RLIMIT_CPU", cpu, cpu + 1), ("RLIMIT_NPROC", 1, 1), ("RLIMIT_CORE", 0, 0),
    ):
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (soft, hard))


def _guard():
    import _socket, faulthandler, os, posix, shutil, socket, subprocess
    faulthandler.disable()
    def blocked(name):
        def refuse(*args, **kwargs):
            raise PermissionError(name + " is disabled in the sandbox")
        return refuse
    process = ("fork forkpty system popen kill killpg execv execve execl execle execlp execlpe "
               "execvp execvpe spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe "
               "posix_spawn posix_spawnp setsid setpgid setpgrp setuid setgid seteuid setegid "
               "setreuid setregid setresuid setresgid chroot")
    files = ("remove unlink rmdir removedirs rename renames replace truncate ftruncate "
             "chmod fchmod lchmod chown fchown lchown link symlink mkfifo mknod")
    table = ((os, process + " " + files), (posix, process + " " + files),
             (shutil, "rmtree move chown"),
             (subprocess, "Popen run call check_call check_output getoutput getstatusoutput"),
             (socket, "socket socketpair create_connection create_server fromfd"),
             (_socket, "socket socketpair"))
    for module, names in table:
        for name in names.split():
            if hasattr(module, name):
                setattr(module, name, blocked(module.__name__ + "." + name))
    import _posixsubprocess
    _posixsubprocess.fork_exec = blocked("fork_exec")


def _main():
    import linecache, os, traceback
    write, exit_now, marker_fd = os.write, os._exit, int(sys.argv[1])
    nonce, _, source = sys.stdin.read().partition("\n")
    linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
    _limit()
    _guard()
    try:
        exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
    except AssertionError:
        verdict = "failed AssertionError"
        traceback.print_exc()
    except BaseException as exc:
        verdict = "error " + type(exc).__name__
        traceback.print_exc()
    else:
        verdict = "passed"
    for stream in (sys.__stdout__, sys.__stderr__):
        stream.flush()
    write(marker_fd, (nonce + " " + verdict + "\n").encode())
    exit_now(0 if verdict == "passed" else 1)


_main()
"""


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one program run against its tests.

    Attributes:
        passed: True only when ``check(entry_point)`` returned and the process exited cleanly.
        status: "passed"; "failed" (a test assertion failed); "timeout" (wall-clock or CPU limit);
            "error" (any other exception, a syntax error, an early exit, a limit-breaking kill).
        detail: why it did not pass: the end of the child's stderr (its traceback) or a message.

    """

    passed: bool
    status: ExecStatus
    detail: str


def run_tests(program: str, test: str, entry_point: str, timeout_s: float = 10.0) -> ExecResult:
    """Run ``program + test + check(entry_point)`` in a sandboxed subprocess and grade it.

    Args:
        program: the candidate code (usually prompt plus completion, see `code.extract_program`).
        test: the benchmark's test code, defining ``check(candidate)``.
        entry_point: the name of the function under test.
        timeout_s: wall-clock limit; the CPU-time limit is this rounded up plus one second.

    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive")
    source = f"{program}\n{test}\ncheck({entry_point})\n"
    nonce = secrets.token_hex(16)
    cpu_s = math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="dps-sandbox-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp, "work")
        work.mkdir()
        err_path = Path(tmp, "stderr")
        read_fd, write_fd = os.pipe()
        try:
            with open(Path(tmp, "stdout"), "wb") as out, open(err_path, "wb") as err:
                command = [sys.executable, "-I", "-c", _RUNNER, str(write_fd)]
                command += [str(MEMORY_LIMIT_BYTES), str(FILE_SIZE_LIMIT_BYTES), str(cpu_s)]
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=work,
                    env=_child_env(work),
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )
            os.close(write_fd)
            write_fd = -1
            timed_out = _wait(process, f"{nonce}\n{source}", timeout_s)
            marker = _read_available(read_fd)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        stderr_tail = _read_tail(err_path)
    return _verdict(process.returncode, timed_out, marker, nonce, stderr_tail, timeout_s)


def run_many(
    cases: Sequence[tuple[str, str, str]], timeout_s: float = 10.0, workers: int | None = None
) -> list[ExecResult]:
    """Run ``(program, test, entry_point)`` cases in parallel; results keep the input order.

    Each worker thread drives one subprocess at a time; ``workers`` defaults to the number of
    CPUs this process may use.
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dps-sandbox") as pool:
        return list(pool.map(lambda case: run_tests(case[0], case[1], case[2], timeout_s), cases))


def _child_env(work: Path) -> dict[str, str]:
    """Return a minimal environment: nothing leaks in from the parent; one thread for BLAS."""
    env = {"PATH": os.defpath, "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def _wait(process: subprocess.Popen[bytes], stdin_text: str, timeout_s: float) -> bool:
    """Feed stdin and wait; kill the whole process group in any case. Returns True on timeout."""
    try:
        process.communicate(stdin_text.encode(), timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # the group is already gone: the usual case after a clean exit
            pass
        process.wait()


def _read_available(fd: int) -> str:
    """Return what the child wrote to the marker pipe, never blocking (the child is dead)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, _READ_CAP_BYTES).decode(errors="replace")
    except BlockingIOError:
        return ""


def _read_tail(path: Path) -> str:
    """Return the last `DETAIL_CHARS` characters of a capped output file."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _READ_CAP_BYTES))
        return handle.read(_READ_CAP_BYTES).decode(errors="replace")[-DETAIL_CHARS:]


def _verdict(
    returncode: int, timed_out: bool, marker: str, nonce: str, stderr_tail: str, timeout_s: float
) -> ExecResult:
    """Turn the exit code, the marker and stderr into an `ExecResult`."""
    if timed_out:
        return ExecResult(False, "timeout", f"timed out after {timeout_s:g} s")
    if returncode == -signal.SIGXCPU:
        return ExecResult(False, "timeout", "exceeded its CPU-time limit")
    lines = [line for line in marker.splitlines() if line.startswith(nonce + " ")]
    verdict = lines[-1][len(nonce) + 1 :] if lines else ""
    if verdict == "passed" and returncode == 0:
        return ExecResult(True, "passed", "")
    if verdict.startswith("failed"):
        return ExecResult(False, "failed", stderr_tail)
    if verdict.startswith("error"):
        return ExecResult(False, "error", f"raised {verdict[6:]}\n{stderr_tail}")
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exited with code {returncode}"
    return ExecResult(False, "error", f"{how} before its tests finished\n{stderr_tail}")
