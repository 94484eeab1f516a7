"""The graded program never has host privileges, even when the tests run as root (issue #18).

One test per attack of the issue: a sysctl write, reading the grader's session keyring, a fork
bomb, a memory bomb of five children; plus what stops them (an unprivileged uid in its own user
namespace). Each checks the verdict and the host. They pass as root and as an ordinary user
(``test_sandbox_unprivileged.py`` reruns this file as one when the suite runs as root).
"""

from __future__ import annotations

import ast
import ctypes
import errno
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dps_cli.errors import UserError
from dps_cli.tasks.grading import bubblewrap, cgroup, privilege_drop, seccomp
from dps_cli.tasks.grading.sandbox import run_tests, sandbox_prefix
from tests.tasks.grading.host import processes_named

pytestmark = pytest.mark.skipif(
    bubblewrap.unavailable_reason() is not None,
    reason=f"bubblewrap cannot start here: {bubblewrap.unavailable_reason()}",
)

TEST = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
WRONG = "def double(xs):\n    return xs\n"
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_GET_KEYRING_ID, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_UNLINK, KEYCTL_READ = 0, 1, 9, 11


def reported(attack: str, timeout_s: float = 10.0) -> object:
    """What ``attack`` reported with ``assert False, report``; the verdict must be a failure."""
    result = run_tests(attack + WRONG, TEST, "double", timeout_s=timeout_s)
    assert result.status == "failed", result.detail
    last = result.detail.strip().splitlines()[-1]
    return ast.literal_eval(last.removeprefix("AssertionError: "))


def assert_none_left(name: str) -> None:
    """No process named ``name`` exists once the sandbox is gone (it may take a moment)."""
    deadline = time.monotonic() + 3.0
    while processes_named(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_named(name) == []


@pytest.fixture(params=["cgroup", "rlimit"])
def caps(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which caps hold: a cgroup per sandbox (where one can be made) or the per-process limits
    alone, as on a machine without cgroups."""
    if request.param == "cgroup" and cgroup.cgroup_parents() is None:
        pytest.skip("this process cannot make cgroups here")
    if request.param == "rlimit":
        monkeypatch.setattr(cgroup, "cgroup_parents", lambda: None)
    return str(request.param)


def test_the_program_runs_unprivileged_in_its_own_user_namespace() -> None:
    attack = (
        LIBC + "import os\n"
        "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in line)\n"
        "mapping = open('/proc/self/uid_map').read().split()\n"
        "nested = libc.unshare(0x10000000)  # CLONE_NEWUSER\n"
        "assert False, (os.getuid(), os.geteuid(), os.getgid(), mapping, status['CapEff'].strip(),"
        " nested)\n"
    )
    uid, euid, gid, mapping, caps, nested = reported(attack)  # type: ignore[misc]
    expected = bubblewrap.SANDBOX_UID if os.geteuid() == 0 else os.geteuid()
    assert (uid, euid) == (expected, expected) and gid != 0
    # One uid mapped, to itself: not host root, and no other host uid reachable.
    assert mapping == [str(expected), str(expected), "1"]
    assert int(caps, 16) == 0 and nested == -1


@pytest.fixture
def sysctls() -> Iterator[dict[str, str]]:
    """Harmless sysctls that exist here, with their values before the test."""
    names = ["kernel/core_pattern", "vm/swappiness", "kernel/printk_ratelimit"]
    values = {
        name: Path("/proc/sys", name).read_text()
        for name in names
        if Path("/proc/sys", name).exists()
    }
    assert values, "none of the sysctls exists"
    yield values
    assert {name: Path("/proc/sys", name).read_text() for name in values} == values


def test_a_sysctl_cannot_be_written_even_with_its_own_value(sysctls: dict[str, str]) -> None:
    attack = (
        "import os\noutcome = {}\n"
        f"for name in {sorted(sysctls)!r}:\n"
        "    path = '/proc/sys/' + name\n"
        "    try:\n"
        "        value = open(path).read()\n"
        "        with open(path, 'w') as handle:\n"
        "            handle.write(value)\n"
        "        outcome[name] = 'written'\n"
        "    except OSError as exc:\n"
        "        outcome[name] = exc.errno\n"
        "try:\n"
        "    open('/proc/sysrq-trigger', 'w').write('h')\n"
        "    outcome['sysrq'] = 'written'\n"
        "except OSError as exc:\n"
        "    outcome['sysrq'] = exc.errno\n"
        "assert False, outcome\n"
    )
    outcome = reported(attack)
    assert isinstance(outcome, dict) and set(outcome) == set(sysctls) | {"sysrq"}
    # /proc is read-only; were it not, the uid (not host root) would get EACCES.
    assert all(value in (errno.EROFS, errno.EACCES, errno.ENOENT) for value in outcome.values())
    assert all(outcome[name] == errno.EROFS for name in sysctls)


def _keyctl(*args: object) -> int:
    """``keyctl(args)`` in this process: its result, or ``-errno``."""
    libc = ctypes.CDLL(None, use_errno=True)
    number = seccomp.KEYRING_SYSCALLS[platform.machine()][0][1][2]
    result = int(libc.syscall(number, *args))
    return result if result >= 0 else -ctypes.get_errno()


@pytest.fixture
def session_key() -> Iterator[tuple[int, bytes]]:
    """A key in this process's session keyring (the one the sandbox inherits), removed after."""
    if platform.machine() not in seccomp.KEYRING_SYSCALLS:
        pytest.skip(f"no keyring system call numbers for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    add_key = seccomp.KEYRING_SYSCALLS[platform.machine()][0][1][0]
    secret = f"dps-secret-{os.getpid()}".encode()
    description = f"dps-test-{os.getpid()}".encode()
    arguments = (add_key, b"user", description, secret, len(secret), KEY_SPEC_SESSION_KEYRING)
    serial = int(libc.syscall(*arguments))
    if serial < 0 and ctypes.get_errno() == errno.EACCES:
        # A session keyring inherited from another user (the rerun as an ordinary user under
        # setpriv): this process starts its own, which the sandbox then inherits.
        _keyctl(KEYCTL_JOIN_SESSION_KEYRING, None)
        serial = int(libc.syscall(*arguments))
    if serial < 0:
        pytest.skip(f"this process cannot add keys ({os.strerror(ctypes.get_errno())})")
    yield serial, secret
    _keyctl(KEYCTL_UNLINK, serial, KEY_SPEC_SESSION_KEYRING)


def test_the_graders_session_keyring_is_out_of_reach(session_key: tuple[int, bytes]) -> None:
    serial, secret = session_key
    buffer = ctypes.create_string_buffer(256)
    assert _keyctl(KEYCTL_READ, serial, buffer, 256) == len(secret)  # readable out here
    keyctl = seccomp.KEYRING_SYSCALLS[platform.machine()][0][1][2]
    attack = (
        LIBC + "buffer = ctypes.create_string_buffer(256)\noutcome = []\n"
        f"for args in [({KEYCTL_READ}, {serial}, buffer, 256),"
        f" ({KEYCTL_GET_KEYRING_ID}, {KEY_SPEC_SESSION_KEYRING}, 0),"
        f" ({KEYCTL_READ}, {KEY_SPEC_SESSION_KEYRING}, buffer, 256),"
        f" ({KEYCTL_JOIN_SESSION_KEYRING}, 0)]:\n"
        f"    outcome.append((libc.syscall({keyctl}, *args), ctypes.get_errno()))\n"
        "outcome.append(buffer.raw.rstrip(b'\\0'))\n"
        "assert False, outcome\n"
    )
    outcome = reported(attack)
    assert outcome == [(-1, errno.EPERM)] * 4 + [b""]
    assert _keyctl(KEYCTL_READ, serial, buffer, 256) == len(secret)
    assert buffer.raw[: len(secret)] == secret  # the key is still there, unchanged


@pytest.mark.usefixtures("caps")
def test_a_fork_bomb_starts_no_process_and_leaves_none() -> None:
    name = f"dpsf{os.getpid() % 10**8}"
    attack = (
        LIBC + "import os, time\nstarted, refused = 0, set()\n"
        "for _ in range(150):\n"
        "    pid = libc.fork()\n"
        "    if pid == 0:\n"
        f"        libc.prctl(15, {name.encode()!r}, 0, 0, 0)  # PR_SET_NAME\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "    if pid > 0:\n"
        "        started += 1\n"
        "    else:\n"
        "        refused.add(ctypes.get_errno())\n"
        "assert False, (started, sorted(refused))\n"
    )
    started, refused = reported(attack)  # type: ignore[misc]
    # The candidate process may start no process at all: RLIMIT_NPROC of 1 binds its uid, which
    # is not root, and counts the processes of its own user namespace (the judge is one).
    assert (started, refused) == (0, [errno.EAGAIN])
    assert_none_left(name)


@pytest.mark.usefixtures("caps")
def test_a_memory_bomb_of_five_children_stays_under_the_caps() -> None:
    name = f"dpsm{os.getpid() % 10**8}"
    attack = (
        LIBC + "import os, time\nchildren = 0\n"
        "for _ in range(5):\n"
        "    pid = libc.fork()\n"
        "    if pid == 0:\n"
        f"        libc.prctl(15, {name.encode()!r}, 0, 0, 0)\n"
        "        hog = bytearray(800 * 1024 * 1024)  # zero-filled, so resident\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "    children += pid > 0\n"
        "try:\n"
        "    hog = bytearray(3 * 1024 ** 3)\n"
        "    alone = 'allocated'\n"
        "except MemoryError:\n"
        "    alone = 'MemoryError'\n"
        "assert False, (children, alone)\n"
    )
    assert reported(attack) == (0, "MemoryError")
    assert_none_left(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root grading process builds the view")
def test_a_view_that_cannot_be_built_makes_grading_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """However the outer bwrap fails (here: it never reports its child), grading refuses in
    one sentence that names --unsafe-sandbox, never with a traceback."""

    def hangs(command: tuple[str, ...]) -> int:
        raise subprocess.TimeoutExpired(command[0], 30.0)

    monkeypatch.setattr(privilege_drop, "view_namespace", hangs)
    monkeypatch.setattr(bubblewrap, "unavailable_reason", bubblewrap.unavailable_reason.__wrapped__)
    with pytest.raises(UserError) as refused:
        sandbox_prefix()
    message = str(refused.value)
    assert "could not start a sandbox here (Command" in message and "timed out after 30" in message
    assert message.endswith(
        "pass --unsafe-sandbox to `dps evaluate` to grade them with the weaker "
        "in-process guard instead."
    )


def test_the_uid_that_root_drops_to_must_exist_in_its_user_namespace() -> None:
    uid = bubblewrap.SANDBOX_UID
    assert bubblewrap.uid_mapped(uid, "         0          0 4294967295\n")  # the host
    assert not bubblewrap.uid_mapped(uid, "0 1000 1\n")  # rootless, its root only
    assert bubblewrap.uid_mapped(uid, "0 1000 1\n1 100000 65536\n")  # rootless, with subuids
    assert not bubblewrap.uid_mapped(uid, "0 1000 1\n1 100000 65533\n")  # just below it
