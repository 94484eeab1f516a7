"""A cgroup for each grading sandbox: one cap on the memory and the processes of all of it.

Resource limits (``setrlimit``) bound each process on its own; a cgroup bounds the sandbox as a
whole, bwrap and every process inside together. One can be made where the grading process may
create cgroups below its own: cgroup v2 with the memory and pids controllers enabled for its
children, or the v1 memory and pids hierarchies (as root, on most cluster nodes and in privileged
containers). cgroup v2 allows that only rarely: a cgroup that holds processes (the grader's
own, under systemd or in a container) cannot enable controllers for its children, so in practice
only a grader in the root cgroup gets one there. Elsewhere (an ordinary user without delegation,
most unprivileged containers, most cgroup v2 hosts)
`cgroup_parents` is None, grading goes on without one, and the per-process limits of
`dps_cli.tasks.grading.sandbox_runner` are the caps (docs/sandbox.md says which applies).

Each sandbox's cgroup is made before it starts, joined by bwrap's process before it executes (so
nothing escapes it by forking early), and, after grading, emptied (anything left is killed) and
removed. Those of a grading process that was killed outright are removed by the next one.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_CONTROLLERS = ("memory", "pids")
_EMPTY_WAIT_S = 2.0
_STALE_AFTER_S = 600.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parent:
    """A directory under which sandbox cgroups are made, and the files that set its caps."""

    path: Path
    version: int  # 1 or 2


@functools.cache
def cgroup_parents() -> tuple[Parent, ...] | None:
    """Where this process can make sandbox cgroups (one directory for v2, two for v1), found
    once by making and removing one; None where it cannot."""
    try:
        own = dict(_own_cgroups())
    except OSError:
        return None
    parents: tuple[Parent, ...]
    if "" in own and (_ROOT / "cgroup.controllers").is_file():
        parent = _ROOT / own[""].lstrip("/")
        try:
            delegated = (parent / "cgroup.subtree_control").read_text().split()
        except OSError:
            return None
        if not set(_CONTROLLERS) <= set(delegated):
            return None
        parents = (Parent(parent, 2),)
    elif all(name in own for name in _CONTROLLERS):
        parents = tuple(Parent(_ROOT / name / own[name].lstrip("/"), 1) for name in _CONTROLLERS)
    else:
        return None
    try:
        SandboxCgroup.create(parents, memory_bytes=64 * 1024**2, pids=4).remove()
    except OSError as exc:
        logger.info("No cgroup for the grading sandboxes (%s): per-process limits only", exc)
        return None
    remove_stale(parents)
    return parents


def remove_stale(parents: tuple[Parent, ...], older_than_s: float = _STALE_AFTER_S) -> None:
    """Remove the empty sandbox cgroups that a grading process killed outright left behind.

    A sandbox's cgroup is empty only for the moment between its creation and bwrap's start, so
    an empty one untouched for ``older_than_s`` is a leftover, whichever process (in whichever
    pid namespace) made it; one that still holds a process cannot be removed and is kept.
    """
    now = time.time()
    for parent in parents:
        for directory in parent.path.glob("dps-sandbox-*"):
            try:
                if now - directory.stat().st_mtime > older_than_s:
                    directory.rmdir()
            except OSError:  # busy, or removed by its owner meanwhile
                continue


def _own_cgroups() -> list[tuple[str, str]]:
    """(controller, path) for this process from /proc/self/cgroup; "" for the v2 hierarchy."""
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found.append((name, path))
    return found


@dataclass(frozen=True)
class SandboxCgroup:
    """The cgroup (one directory per hierarchy) of one sandbox."""

    directories: tuple[Path, ...]

    @classmethod
    def create(cls, parents: tuple[Parent, ...], memory_bytes: int, pids: int) -> SandboxCgroup:
        """Make the cgroup with its caps: memory (swap included where it is counted), processes."""
        name = f"dps-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        made: list[Path] = []
        try:
            for parent in parents:
                directory = parent.path / name
                directory.mkdir()
                made.append(directory)
                for file, value in _caps(parent.version, memory_bytes, pids):
                    path = directory / file
                    if path.exists():
                        path.write_text(str(value))
        except OSError:
            SandboxCgroup(tuple(made)).remove()
            raise
        return cls(tuple(made))

    def join(self) -> Join:
        """A ``preexec_fn`` that moves a new process into this cgroup before it executes."""
        return Join(self.directories)

    def remove(self) -> None:
        """Kill whatever is still in the cgroup, wait until it is empty, and remove it."""
        deadline = time.monotonic() + _EMPTY_WAIT_S
        for directory in self.directories:
            while True:
                pids = _members(directory)
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy: processes still exiting
                    if time.monotonic() > deadline:
                        logger.warning("Could not remove the sandbox cgroup %s", directory)
                        break
                    time.sleep(0.01)


class Join:
    """Moves the process that calls it into a cgroup: bwrap's, between fork and exec.

    The files are opened in the grading process, so the forked child only writes to them.
    """

    def __init__(self, directories: tuple[Path, ...]) -> None:
        self._fds: list[int] = []
        try:
            for directory in directories:
                self._fds.append(os.open(directory / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            self.close()  # those already open
            raise

    def __call__(self) -> None:
        for fd in self._fds:
            os.write(fd, b"0")  # "0": the writing process itself

    def close(self) -> None:
        """Close the files (in the grading process, once the child has started)."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _members(directory: Path) -> list[int]:
    """The processes in one cgroup directory."""
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _caps(version: int, memory_bytes: int, pids: int) -> list[tuple[str, int]]:
    """The files that set the caps, and their values, for cgroup ``version`` (1 or 2)."""
    if version == 2:
        return [("memory.max", memory_bytes), ("memory.swap.max", 0), ("pids.max", pids)]
    return [
        ("memory.limit_in_bytes", memory_bytes),
        ("memory.memsw.limit_in_bytes", memory_bytes),
        ("pids.max", pids),
    ]
