"""Run untrusted generated code against its tests, isolated by the operating system (HumanEval).

**Isolation.** Each program runs under bubblewrap (`dps_cli.tasks.grading.bubblewrap`), never
with host privileges: as an unprivileged uid (the grading user's, or `bubblewrap.SANDBOX_UID`
when grading runs as root) in its own user namespace, with no capabilities and no way to make
another user namespace. It sees a read-only view of the system directories and of the Python
installation only (the interpreter runs with ``-I -S``: standard library, no site-packages on
its path), a read-only /proc of its own (so /proc/sys cannot be written), a private 64 MiB tmpfs
as its only writable directory (cwd, HOME and TMPDIR; in memory, gone with the sandbox), an
empty environment, its own network namespace (no network; its loopback is its own), its own pid
namespace (neither the grader nor any host process is visible, and every process it starts dies
with the sandbox), ``--die-with-parent``, a new session, and a seccomp filter that refuses the
keyring system calls (`seccomp`), so the grader's session keyring is out of reach. Caps: where
the grading process can make cgroups, each sandbox gets one (`cgroup`) capping the memory
(`SANDBOX_MEMORY_BYTES`) and the processes (`SANDBOX_PIDS`) of the whole sandbox. In any case
each process has resource limits (address space, file size, which caps its output too, CPU
time, no core dumps) and the candidate process may start no process at all (``RLIMIT_NPROC``
of 1, which binds because its uid is not root and counts the processes of its own user
namespace), so the memory of a grading is at most the judge's and the candidate's limits
together. A Python-level guard also makes fork, exec, kill, file removal and sockets raise
PermissionError, so honest mistakes fail early. On timeout the whole sandbox is killed. Where
bubblewrap cannot start, or any of this cannot be set up (`bubblewrap.unavailable_reason` checks
it from inside a sandbox), grading refuses with a `UserError` naming the reason, unless the
caller passes ``unsafe=True`` (``dps evaluate --unsafe-sandbox``): then the same runner runs as
a plain subprocess with only the limits and the guard, which stop accidents, not a program that
means harm. docs/sandbox.md is the user's account of all this.

**The verdict.** The tests and the program run in two processes (`sandbox_runner`). The judge,
pid 1 of the sandbox, non-dumpable, runs the benchmark's ``check`` and calls the program's
functions in the candidate process over a pair of pipes. It alone holds the marker pipe to the
grader and the nonce: the candidate is forked before the nonce is read and closes every other
descriptor before any program code runs. A pass is the judge's line ``<nonce> passed`` on that
pipe plus exit code 0.

Protected against: exiting early (``sys.exit``, ``os._exit``) or being killed mid-test; writing
fake verdicts to any descriptor or walking the stack for runner state (the candidate holds
neither the marker nor the nonce); attacking the judge (it ignores signals from inside its pid
namespace, and being non-dumpable it cannot be ptraced and its /proc/1/fd and mem cannot be
opened); answers that are not plain data: only None, bool, int, float, complex, str, bytes and
lists, tuples, dicts and sets of them cross, decoded strictly by the judge into exact built-in
types, so an object whose ``__eq__`` is always True (the classic forgery of HumanEval-style
checks, which the reference harness cannot stop because it runs the tests in the program's
process) fails to cross, and a list subclass arrives as a plain list; redefining a builtin the
tests use (``def abs(x): return 0``), since program names never shadow builtins for the tests; a
StopIteration ending the tests' own iteration (``all(map(candidate, ...))``).

Not protected against: the program's own versions of helpers the tests call (HumanEval/32's
``poly``, /38's ``encode_cyclic``, /50's ``encode_shift`` come from the prompt and run as the
program defines them, as in any HumanEval harness); a candidate that mutates its arguments is not
seen doing so by the tests, and a generator or other non-plain answer is an error even where an
in-process test would have accepted it; CPU use until the timeout; reading what the sandbox
shows (system directories, the Python installation, the system calls' answers about the kernel);
kernel exploits (namespaces and seccomp are not a virtual machine).
With ``unsafe=True`` the program runs as the grading user: it can read and write that user's
files, reach the network, leave processes behind, and read the grader's memory (the nonce) and
open its marker pipe, so a determined program can forge a pass there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dps_cli.errors import UserError
from dps_cli.tasks.grading import bubblewrap, cgroup
from dps_cli.tasks.grading.sandbox_runner import encode

ExecStatus = Literal["passed", "failed", "timeout", "error"]

#: Address-space limit of each process (bytes); far above what HumanEval needs, low enough to bound it.
MEMORY_LIMIT_BYTES = 2 * 1024**3
#: Memory of a whole sandbox (bwrap, the judge, the candidate, its files) where a cgroup caps it.
SANDBOX_MEMORY_BYTES = MEMORY_LIMIT_BYTES
#: Processes and threads of a whole sandbox where a cgroup caps them (it needs about four).
SANDBOX_PIDS = 16
#: Largest file a process may write, its stdout and stderr included (bytes).
FILE_SIZE_LIMIT_BYTES = 16 * 1024**2
#: How much of the end of the child's stderr is kept as the result's detail (characters).
DETAIL_CHARS = 2000
_READ_CAP_BYTES = 64 * 1024
_RUNNER_PATH = Path(__file__).with_name("sandbox_runner.py")
#: The judge's first line on the marker pipe, written before any program code exists.
_STARTED = "started"
_START_ATTEMPTS = 3
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one program run against its tests.

    Attributes:
        passed: True only when the judge process saw ``check(entry_point)`` return.
        status: "passed"; "failed" (a test assertion failed); "timeout" (wall-clock or CPU limit);
            "error" (any other exception, a syntax error, an early exit, a limit-breaking kill).
        detail: why it did not pass: the end of the sandbox's stderr (tracebacks) or a message.

    """

    passed: bool
    status: ExecStatus
    detail: str


def sandbox_prefix(unsafe: bool = False) -> list[str]:
    """The ``bwrap`` options that start the runner's interpreter, without the per-run
    ``--seccomp FD`` and the interpreter itself; empty with ``unsafe`` (the bare interpreter).

    Raises:
        UserError: bubblewrap cannot start here and ``unsafe`` is False.

    """
    if unsafe:
        return []
    reason = bubblewrap.unavailable_reason()
    bwrap = bubblewrap.find_bwrap()
    if reason is not None or bwrap is None:
        raise UserError(
            f"HumanEval programs cannot be isolated because {reason}; pass --unsafe-sandbox to "
            "`dps evaluate` to grade them with the weaker in-process guard instead."
        )
    return bubblewrap.bwrap_command(bwrap, bubblewrap.sandbox_interpreter())


def run_tests(
    program: str, test: str, entry_point: str, timeout_s: float = 10.0, *, unsafe: bool = False
) -> ExecResult:
    """Run ``check(entry_point)`` of ``test`` against ``program`` in the sandbox and grade it.

    Args:
        program: the candidate code (usually prompt plus completion, see `code.extract_program`).
        test: the benchmark's test code, defining ``check(candidate)``.
        entry_point: the name of the function under test.
        timeout_s: wall-clock limit; the CPU-time limit is this rounded up plus one second.
        unsafe: run without bubblewrap, with only the resource limits and the Python guard.

    Raises:
        UserError: bubblewrap cannot start here and ``unsafe`` is False.

    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive")
    return _run(sandbox_prefix(unsafe), (program, test, entry_point), timeout_s, unsafe)


def run_many(
    cases: Sequence[tuple[str, str, str]],
    timeout_s: float = 10.0,
    workers: int | None = None,
    *,
    unsafe: bool = False,
) -> list[ExecResult]:
    """Run ``(program, test, entry_point)`` cases in parallel; results keep the input order.

    Each worker thread drives one sandbox at a time; ``workers`` defaults to the number of
    CPUs this process may use. Raises `UserError` as `run_tests` does, before running any.
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive")
    if not cases:
        return []
    prefix = sandbox_prefix(unsafe)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dps-sandbox") as pool:
        return list(pool.map(lambda case: _run(prefix, case, timeout_s, unsafe), cases))


def _run(
    prefix: list[str], case: tuple[str, str, str], timeout_s: float, unsafe: bool
) -> ExecResult:
    """Grade one ``(program, test, entry_point)`` case; start the sandbox again if it did not
    start (a failure of the machine, never of the program, which runs only once it started)."""
    for _ in range(_START_ATTEMPTS):
        nonce = secrets.token_hex(16)
        returncode, timed_out, marker, stderr_tail = _run_once(
            prefix, case, nonce, timeout_s, unsafe
        )
        if timed_out or _STARTED in marker.splitlines():
            return _verdict(returncode, timed_out, marker, nonce, stderr_tail, timeout_s)
        logger.warning("The sandbox did not start (exit code %d); retrying", returncode)
    raise RuntimeError(
        f"The grading sandbox did not start in {_START_ATTEMPTS} tries (exit code {returncode}): "
        f"{stderr_tail.strip()}"
    )


def _run_once(
    prefix: list[str], case: tuple[str, str, str], nonce: str, timeout_s: float, unsafe: bool
) -> tuple[int, bool, str, str]:
    """Start the runner under ``prefix``, feed it the case, wait; return its exit code, whether
    it timed out, what it wrote to the marker pipe and the end of its stderr."""
    program, test, entry_point = case
    job = encode({"nonce": nonce, "program": program, "test": test, "entry_point": entry_point})
    cpu_s = math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="dps-sandbox-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp, "work")
        work.mkdir()
        err_path = Path(tmp, "stderr")
        read_fd, write_fd, filter_fd = *os.pipe(), -1
        try:
            filter_fd = -1 if unsafe else bubblewrap.filter_fd()
            with (
                open(Path(tmp, "stdout"), "wb") as out,
                open(err_path, "wb") as err,
                _sandbox_cgroup(unsafe) as join,
            ):
                command = prefix + ([] if unsafe else ["--seccomp", str(filter_fd)])
                command += [bubblewrap.sandbox_interpreter(), "-I", "-S", "-c", _runner_source()]
                command += [str(write_fd)]
                command += [str(MEMORY_LIMIT_BYTES), str(FILE_SIZE_LIMIT_BYTES), str(cpu_s)]
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=work,
                    env=bubblewrap.environment(str(work)) if unsafe else {},
                    start_new_session=True,
                    pass_fds=(write_fd,) if unsafe else (write_fd, filter_fd),
                    preexec_fn=None if unsafe else bubblewrap.launcher(join),
                )
                os.close(write_fd)
                write_fd = -1
                timed_out = _wait(process, job, timeout_s)
                marker = _read_available(read_fd)
        finally:
            for fd in (read_fd, write_fd, filter_fd):
                if fd >= 0:
                    os.close(fd)
        return process.returncode, timed_out, marker, _read_tail(err_path)


@contextlib.contextmanager
def _sandbox_cgroup(unsafe: bool) -> Iterator[Callable[[], None] | None]:
    """A new cgroup capping the whole sandbox (`SANDBOX_MEMORY_BYTES`, `SANDBOX_PIDS`), as the
    ``preexec_fn`` that joins it; None where no cgroup can be made (the per-process limits of
    the runner are then the caps) or with ``unsafe``. Emptied and removed on exit."""
    parents = None if unsafe else cgroup.cgroup_parents()
    if parents is None:
        yield None
        return
    try:
        group = cgroup.SandboxCgroup.create(parents, SANDBOX_MEMORY_BYTES, SANDBOX_PIDS)
    except OSError as exc:  # found usable at start, refused now (a limit on cgroups, say)
        raise UserError(
            f"HumanEval programs cannot be isolated because their cgroup could not be made "
            f"({exc.strerror or exc}); pass --unsafe-sandbox to `dps evaluate` to grade them "
            "with the weaker in-process guard instead."
        ) from None
    try:
        join = group.join()
        try:
            yield join
        finally:
            join.close()
    finally:
        group.remove()


@functools.cache
def _runner_source() -> str:
    """The source of `sandbox_runner`, which the sandboxed interpreter runs with ``-c``."""
    return _RUNNER_PATH.read_text()


def _wait(process: subprocess.Popen[bytes], job: bytes, timeout_s: float) -> bool:
    """Feed stdin and wait; kill the whole process group in any case. Returns True on timeout."""
    try:
        process.communicate(job, timeout=timeout_s)
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
    """Turn the exit code, the judge's marker line and stderr into an `ExecResult`."""
    if timed_out:
        return ExecResult(False, "timeout", f"timed out after {timeout_s:g} s")
    lines = [line for line in marker.splitlines() if line.startswith(nonce + " ")]
    verdict = lines[-1][len(nonce) + 1 :] if lines else ""
    if verdict == "passed" and returncode == 0:
        return ExecResult(True, "passed", "")
    # The judge killed for CPU time: directly (-SIGXCPU) or as reported by bwrap (128 + SIGXCPU).
    if verdict == "timeout" or (
        not verdict and returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
    ):
        return ExecResult(False, "timeout", "exceeded its CPU-time limit")
    if verdict.startswith("failed"):
        return ExecResult(False, "failed", stderr_tail)
    if verdict.startswith("error"):
        return ExecResult(False, "error", f"raised {verdict[6:]}\n{stderr_tail}")
    if verdict.startswith("died "):
        how = verdict[5:]
    elif returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exited with code {returncode}"
    return ExecResult(False, "error", f"{how} before its tests finished\n{stderr_tail}")
