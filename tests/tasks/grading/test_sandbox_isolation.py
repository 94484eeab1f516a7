"""Attacks on the host and on the verdict, each run through the bubblewrap sandbox (issue #11).

Every attack gets past the Python-level guard on purpose (plain ``open``, ctypes, classes found
through ``object.__subclasses__()``), so what stops it is the operating system's sandbox or the
separate judge process. Each test checks the verdict and that nothing on the host changed.
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dps_cli.tasks.grading import bubblewrap
from dps_cli.tasks.grading.sandbox import run_tests
from tests.tasks.grading.host import processes_named

pytestmark = pytest.mark.skipif(
    bubblewrap.unavailable_reason() is not None,
    reason=f"bubblewrap cannot start here: {bubblewrap.unavailable_reason()}",
)

TEST = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
CORRECT = "def double(xs):\n    return [2 * x for x in xs]\n"
WRONG = "def double(xs):\n    return xs\n"
# ctypes' libc, reached whatever the guard replaced.
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def run(attack: str, answer: str = WRONG, timeout_s: float = 5.0) -> tuple[str, str]:
    """Status and detail of ``attack`` followed by ``answer``, graded in the sandbox."""
    result = run_tests(attack + answer, TEST, "double", timeout_s=timeout_s)
    return result.status, result.detail


def reported(detail: str) -> str:
    """What a program reported with ``assert False, report`` (the last line of its traceback)."""
    return detail.strip().splitlines()[-1].removeprefix("AssertionError: ")


def test_writes_outside_the_private_directory_do_not_reach_the_host(tmp_path: Path) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("original")
    created = tmp_path / "created.txt"
    beside_tests = Path(__file__).with_name("written_by_sandboxed_program.txt")
    unique = f"dps-sandbox-test-{os.getpid()}"
    targets = [existing, created, beside_tests, Path("/usr", unique), Path("/", unique)]
    attack = (
        "import os\nwritten = []\n"
        f"for path in {[str(t) for t in targets] + ['/dev/shm/x', '/proc/x']!r}:\n"
        "    try:\n"
        "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "        with open(path, 'w') as handle:\n"
        "            handle.write('owned')\n"
        "        written.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    try:
        status, detail = run(attack, CORRECT)
        assert (status, detail) == ("passed", "")  # a correct answer still passes
        assert existing.read_text() == "original"
        assert not any(path.exists() for path in targets[1:])
        status, detail = run(attack + "assert False, sorted(written)\n")
        assert status == "failed"
        # Only paths inside the sandbox's own tmpfs (WORK_DIR, /tmp) were writable; a checkout
        # that itself lies under /tmp puts beside_tests there too, as a private copy.
        assert all(
            path.startswith(bubblewrap.WORK_DIR + "/")
            for path in ast.literal_eval(reported(detail))
        )
        assert existing.read_text() == "original" and not created.exists()
    finally:  # only a broken sandbox leaves these
        for path in targets[2:]:
            path.unlink(missing_ok=True)


def test_host_secrets_and_the_parents_environment_stay_out_of_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t-file")
    stolen = tmp_path / "stolen.txt"
    monkeypatch.setenv("DPS_SECRET_ENV", "s3cr3t-env")
    attack = (
        "import os\nseen = []\n"
        f"paths = [{str(secret)!r}, '/proc/%d/environ' % os.getppid(), '/proc/1/environ',\n"
        f"         '/proc/{os.getpid()}/environ', '/proc/self/environ', '/etc/passwd']\n"
        "for path in paths:\n"
        "    try:\n"
        "        with open(path, 'rb') as handle:\n"
        "            seen.append(handle.read().decode(errors='replace'))\n"
        "    except OSError as exc:\n"
        "        seen.append(type(exc).__name__)\n"
        "seen.append(repr(dict(os.environ)))\n"
        "try:\n"
        f"    open({str(stolen)!r}, 'w').write(repr(seen))\n"
        "except OSError:\n"
        "    pass\n"
        "assert False, repr(seen)\n"
    )
    status, detail = run(attack)
    assert status == "failed"
    assert "s3cr3t" not in detail and "FileNotFoundError" in detail
    assert not stolen.exists()


def test_a_pass_cannot_be_forged_from_inside_the_program() -> None:
    """Walk every frame for runner state, write fake verdicts to every descriptor and to the
    judge's, try to attach to the judge, then exit 0 in the middle of the check."""
    forge = (
        LIBC + "import os, sys\n"
        "def double(xs):\n"
        "    found = set()\n"
        "    frame = sys._getframe()\n"
        "    while frame is not None:\n"
        "        for scope in (frame.f_locals, frame.f_globals):\n"
        "            for value in list(scope.values()):\n"
        "                if isinstance(value, (str, int)) and len(str(value)) < 100:\n"
        "                    found.add(str(value))\n"
        "        frame = frame.f_back\n"
        "    lines = ''.join(f'{token} passed\\n' for token in found).encode()\n"
        "    targets = [str(fd) for fd in range(64)]\n"
        "    targets += [f'/proc/1/fd/{fd}' for fd in range(64)]\n"
        "    for target in targets:\n"
        "        try:\n"
        "            if target.isdigit():\n"
        "                os.write(int(target), lines)\n"
        "            else:\n"
        "                fd = os.open(target, os.O_WRONLY)\n"
        "                os.write(fd, lines)\n"
        "        except OSError:\n"
        "            pass\n"
        "    assert libc.ptrace(16, 1, 0, 0) != 0  # PTRACE_ATTACH to the judge: refused\n"
        "    try:\n"
        "        open('/proc/1/mem', 'rb')\n"
        "        raise SystemExit('judge memory readable')\n"
        "    except PermissionError:\n"
        "        pass\n"
        "    os._exit(0)\n"
    )
    status, detail = run(forge, answer="")
    assert status == "error"
    assert "judge memory readable" not in detail and "AssertionError" not in detail


def test_no_connection_reaches_a_loopback_listener() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    attack = (
        LIBC + "import struct\nerrors = []\n"
        "raw = [c for c in object.__subclasses__() if c.__name__ == 'socket'\n"
        "       and c.__module__ == '_socket'][0]\n"
        "try:\n"
        f"    raw(2, 1).connect(('127.0.0.1', {port}))\n"
        "except OSError as exc:\n"
        "    errors.append(type(exc).__name__)\n"
        "fd = libc.socket(2, 1, 0)  # AF_INET, SOCK_STREAM\n"
        f"address = struct.pack('<H', 2) + struct.pack('>H', {port}) + bytes([127, 0, 0, 1]) + bytes(8)\n"
        "errors.append(libc.connect(fd, address, 16))\n"
        "assert False, errors\n"
    )
    try:
        status, detail = run(attack)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert status == "failed"
    # Its own network namespace: the loopback there has no listener.
    assert reported(detail) == "['ConnectionRefusedError', -1]"
    assert accepted == []


def test_forked_and_detached_processes_do_not_outlive_grading() -> None:
    name = f"dps{os.getpid() % 10**8}"
    attack = (
        LIBC + "import os, time\n"
        "for _ in range(2):\n"
        "    if libc.fork() == 0:\n"
        "        libc.setsid()\n"
        "        if libc.fork() == 0:\n"
        f"            libc.prctl(15, {name.encode()!r}, 0, 0, 0)  # PR_SET_NAME\n"
        "            while True:\n"
        "                time.sleep(0.05)\n"
        "        os._exit(0)\n"
        "time.sleep(0.3)\n"
    )
    status, detail = run(attack, CORRECT)
    assert status == "passed", detail
    deadline = time.monotonic() + 3.0
    while processes_named(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_named(name) == []


def test_signals_to_the_parent_kill_neither_the_judge_nor_the_grader() -> None:
    """SIGKILL by pidfd and by kill(2) to the parent, to pid 1 and to a host process's pid."""
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        attack = (
            LIBC + "import os, signal\n"
            f"for pid in (os.getppid(), 1, {host.pid}):\n"
            "    try:\n"
            "        signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)\n"
            "    except OSError:\n"
            "        pass\n"
            "    libc.kill(pid, 9)\n"
        )
        status, detail = run(attack)
        assert host.poll() is None  # the host process (standing in for the grader) lives
    finally:
        host.kill()
        host.wait()
    # The judge (pid 1 of the sandbox) survived to grade the wrong answer as failed.
    assert status == "failed", detail
    assert "AssertionError" in detail


def test_the_disk_the_program_can_fill_is_small_and_gone_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the grader's own scratch files
    attack = (
        "import os\nblock = b'x' * (15 * 1024 * 1024)\nwritten = 0\n"
        "for i in range(40):\n"
        "    try:\n"
        "        with open(f'file{i}', 'wb') as handle:\n"
        "            handle.write(block)\n"
        "        written += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "assert False, written\n"
    )
    status, detail = run(attack, timeout_s=20)
    assert status == "failed"
    assert int(reported(detail)) * 15 * 1024**2 <= bubblewrap.WORK_DIR_BYTES
    assert list(tmp_path.iterdir()) == []
