"""The cgroup that caps a whole grading sandbox (issue #18), where this machine lets us make one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dps_cli.errors import UserError
from dps_cli.tasks.grading import bubblewrap, cgroup, sandbox

needs_cgroups = pytest.mark.skipif(
    cgroup.cgroup_parents() is None, reason="this process cannot make cgroups here"
)

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"


def leftovers() -> list[Path]:
    """Sandbox cgroups of this process that still exist."""
    parents = cgroup.cgroup_parents() or ()
    return [d for p in parents for d in p.path.glob(f"dps-sandbox-{os.getpid()}-*")]


@needs_cgroups
def test_the_processes_of_one_cgroup_are_capped_and_removed_with_it() -> None:
    parents = cgroup.cgroup_parents()
    assert parents is not None
    group = cgroup.SandboxCgroup.create(parents, memory_bytes=256 * 1024**2, pids=4)
    join = group.join()
    forks = (
        "import os, time\nstarted = 0\n"
        "for _ in range(10):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        started += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "print(started, flush=True)\n"
        "time.sleep(60)\n"
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", forks], stdout=subprocess.PIPE, text=True, preexec_fn=join
        )
        join.close()
        assert process.stdout is not None
        started = int(process.stdout.readline())
        members = [int(pid) for pid in (group.directories[0] / "cgroup.procs").read_text().split()]
    finally:
        group.remove()
    # Four processes in all: the parent and three children; removing the cgroup killed them.
    assert started == 3 and process.pid in members and len(members) == 4
    assert process.wait(timeout=5) < 0
    assert leftovers() == []


@needs_cgroups
@pytest.mark.skipif(
    bubblewrap.unavailable_reason() is not None, reason="bubblewrap cannot start here"
)
def test_a_sandbox_over_its_memory_cap_is_killed_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "SANDBOX_MEMORY_BYTES", 192 * 1024**2)
    # 400 MiB is under the candidate's own address-space limit but over the sandbox's cap.
    program = "def double(x):\n    hog = bytearray(400 * 1024 * 1024)\n    return 2 * x\n"
    result = sandbox.run_tests(program, TEST, "double")
    assert (result.passed, result.status) == (False, "error")
    assert "killed by SIGKILL" in result.detail
    fits = "def double(x):\n    hog = bytearray(64 * 1024 * 1024)\n    return 2 * x\n"
    assert sandbox.run_tests(fits, TEST, "double").passed
    assert leftovers() == []


def open_fds() -> set[str]:
    """This process's open descriptors."""
    return set(os.listdir("/proc/self/fd"))


def test_a_join_that_cannot_open_every_file_leaves_no_descriptor_open(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").write_text("")
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        cgroup.Join((tmp_path / "memory", tmp_path / "pids"))
    assert open_fds() == before


@pytest.mark.skipif(
    bubblewrap.unavailable_reason() is not None, reason="bubblewrap cannot start here"
)
def test_a_cgroup_that_cannot_be_made_at_grading_time_refuses_naming_the_unsafe_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cgroup_parents found a place at start; by the time a program is graded it is gone."""
    gone = (cgroup.Parent(tmp_path / "gone", 2),)
    monkeypatch.setattr(cgroup, "cgroup_parents", lambda: gone)
    before = open_fds()
    with pytest.raises(UserError) as refused:
        sandbox.run_tests("def double(x):\n    return 2 * x\n", TEST, "double")
    assert str(refused.value) == (
        "HumanEval programs cannot be isolated because their cgroup could not be made (No such "
        "file or directory); pass --unsafe-sandbox to `dps evaluate` to grade them with the "
        "weaker in-process guard instead."
    )
    assert open_fds() == before  # the pipes and the seccomp filter's pipe are closed


@needs_cgroups
@pytest.mark.skipif(
    bubblewrap.unavailable_reason() is not None, reason="bubblewrap cannot start here"
)
def test_a_sandbox_that_times_out_leaves_no_cgroup() -> None:
    program = "def double(x):\n    while True:\n        pass\n"
    result = sandbox.run_tests(program, TEST, "double", timeout_s=1.0)
    assert (result.status, result.detail) == ("timeout", "timed out after 1 s")
    assert leftovers() == []


@needs_cgroups
def test_empty_cgroups_left_by_a_killed_grader_are_removed_and_busy_ones_kept() -> None:
    parents = cgroup.cgroup_parents()
    assert parents is not None
    stale = [parent.path / "dps-sandbox-999999999-0badcafe" for parent in parents]
    for directory in stale:
        directory.mkdir()
    busy = cgroup.SandboxCgroup.create(parents, memory_bytes=64 * 1024**2, pids=4)
    join = busy.join()
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=join
    )
    join.close()
    try:
        cgroup.remove_stale(parents)
        assert all(d.exists() for d in stale)  # empty but fresh: maybe just made, kept
        cgroup.remove_stale(parents, older_than_s=-1.0)  # everything counts as old
        assert [d.exists() for d in stale] == [False] * len(stale)
        assert all(d.exists() for d in busy.directories)  # a process is in it
    finally:
        busy.remove()
        for directory in stale:
            if directory.exists():
                directory.rmdir()
    assert process.wait(timeout=5) < 0
    assert leftovers() == []
