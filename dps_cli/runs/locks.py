"""One writer per shard: OS file locks (``fcntl.flock``) that die with the process holding them.

A `dps sample` process holds, while it writes to a run::

    <run>/.locks/shard-<i>-of-<n>.lock   exclusive: a second writer of shard i/n is refused
    <run>/.locks/sharding-<n>.lock       shared: a writer that shards the run differently
                                         (whose questions overlap) is refused too

The kernel releases a flock when its process ends, however it ends (SIGKILL included), so there
is never a stale lock to remove by hand: the lock files stay, and their content (pid, host,
command, start time) only serves the refusal message. ``<run>/.locks/run.lock`` is held briefly
around these checks and around manifest updates, so writers starting together take turns.
Where the filesystem cannot lock, a warning says that concurrent writers go undetected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dps_cli.errors import UserError
from dps_cli.runs.provenance import git_sha

logger = logging.getLogger(__name__)

LOCKS_DIR = ".locks"
_SHARDING = re.compile(r"^sharding-(\d+)\.lock$")
_TEMP_TAG = re.compile(r"^\.part-.*\.parquet\.(s\d+of\d+)\.[0-9a-f]{8}\.tmp$")
TEMP_GLOB = ".part-*.tmp"  # temporary sample parts (runs/atomic.py names them)

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no locking
    fcntl = None  # type: ignore[assignment]


def shard_tag(shard: tuple[int, int]) -> str:
    """A short name for a shard, used in lock and temporary file names: ``s0of4``."""
    return f"s{shard[0]}of{shard[1]}"


@dataclass
class WriterLock:
    """The locks of one writer; `release()` (or the end of the process) frees them."""

    shard: tuple[int, int]
    record: dict[str, Any]
    fds: list[int] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return shard_tag(self.shard)

    def release(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor releases its flock
        self.fds = []


def writer_record(shard: tuple[int, int], command: str) -> dict[str, Any]:
    """Who writes: shard, command, pid, host, start time and git revision (lock file and manifest).

    The revision is per writer because a resumed run gains parts from whatever code resumed it.
    """
    return {
        "shard": f"{shard[0]}/{shard[1]}",
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_sha": git_sha(),
    }


@contextlib.contextmanager
def run_mutex(root: Path) -> Iterator[None]:
    """Hold ``<run>/.locks/run.lock`` exclusively for a short critical section."""
    fd = _open_lock(root / LOCKS_DIR / "run.lock")
    try:
        if fd is not None:
            _lock(fd, exclusive=True, wait=True)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def acquire_writer(root: Path, shard: tuple[int, int], command: str) -> WriterLock:
    """Lock shard ``i/n`` of the run at ``root`` for this process, or refuse in one sentence."""
    lock = WriterLock(shard, writer_record(shard, command))
    locks = root / LOCKS_DIR
    with run_mutex(root):
        for other in sorted(locks.glob("sharding-*.lock")) if fcntl is not None else []:
            match = _SHARDING.match(other.name)
            if match and int(match.group(1)) != shard[1] and is_held(other):
                holders = _holders(locks, int(match.group(1)))
                lock.release()
                raise UserError(
                    f"Another dps sample is writing {root} with --shard ?/{match.group(1)}{holders}, "
                    f"whose questions overlap --shard {shard[0]}/{shard[1]}.",
                    "Wait for it to finish, or use the same sharding.",
                )
        for path, exclusive in ((locks / f"sharding-{shard[1]}.lock", False),
                                (locks / f"shard-{shard[0]}-of-{shard[1]}.lock", True)):  # fmt: skip
            fd = _open_lock(path)
            if fd is None:
                continue
            if not _lock(fd, exclusive=exclusive, wait=False):
                os.close(fd)
                lock.release()
                raise UserError(
                    f"Another dps sample is already writing shard {shard[0]}/{shard[1]} of {root}"
                    f"{_describe(_read_record(path))}.",
                    "Wait for it to finish (or stop it); a later rerun resumes where it stopped.",
                )
            lock.fds.append(fd)
            if exclusive:
                _write_record(fd, lock.record)
    return lock


def is_held(path: Path) -> bool:
    """Whether another open file description holds a lock on ``path`` (False if none can)."""
    if fcntl is None or not path.exists():
        return False
    fd = _open_lock(path)
    if fd is None:
        return False
    try:
        return not _lock(fd, exclusive=True, wait=False)
    finally:
        os.close(fd)


def remove_stale_temporaries(root: Path, samples_dir: Path, lock: WriterLock) -> None:
    """Delete temporary part files whose writer is gone (its shard lock is free).

    Call while holding ``lock`` and the run mutex. A file tagged with this writer's shard is a
    killed predecessor's; one tagged with another shard is stale if that shard's lock is free;
    an untagged one (older dps) is stale if no other writer is active.
    """
    others = [p for p in (root / LOCKS_DIR).glob("shard-*.lock") if p != shard_lock_path(root, lock.tag)]
    for tmp in sorted(samples_dir.glob(TEMP_GLOB)):
        match = _TEMP_TAG.match(tmp.name)
        if match is None:
            stale = not any(is_held(path) for path in others)
        elif match.group(1) == lock.tag:
            stale = True
        else:
            path = shard_lock_path(root, match.group(1))
            stale = path is None or not is_held(path)
        if stale:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            logger.info("Removed %s, left by a writer that was killed", tmp)


def shard_lock_path(root: Path, tag: str) -> Path | None:
    """The lock file of a shard tag ``s<i>of<n>`` (None if the tag is malformed)."""
    match = re.fullmatch(r"s(\d+)of(\d+)", tag)
    return root / LOCKS_DIR / f"shard-{match.group(1)}-of-{match.group(2)}.lock" if match else None


def _holders(locks: Path, count: int) -> str:
    records = [_read_record(path) for path in sorted(locks.glob(f"shard-*-of-{count}.lock")) if is_held(path)]
    return _describe(records[0]) if records else ""


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return ""
    return f" (pid {record.get('pid')} on {record.get('host')}, since {record.get('started_at')})"


def _open_lock(path: Path) -> int | None:
    if fcntl is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _lock(fd: int, exclusive: bool, wait: bool) -> bool:
    """Take a flock; False if another holder blocks it and ``wait`` is off."""
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:  # e.g. ENOLCK/EOPNOTSUPP on a filesystem without locks
        logger.warning("Cannot lock files here (%s); concurrent writers are not detected", err.strerror)
    return True


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
