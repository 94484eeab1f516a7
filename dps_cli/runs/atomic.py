"""Atomic file writes: write to a temporary sibling, fsync, then rename over the target.

A reader (or a crash) never sees a half-written file: either the old content or the new one.
The temporary file lives in the target's directory so the final ``os.replace`` is a rename on
one filesystem, and its name starts with a dot so globs such as ``part-*.parquet`` skip it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dps_cli.errors import UserError

# Write failures the user can fix (free space, pick a writable --out): one sentence, not a bug.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def temporary_sibling(path: Path, tag: str | None = None) -> Path:
    """A fresh hidden temporary path next to ``path`` (same directory, same filesystem).

    ``tag`` (e.g. the writer's shard, ``s0of4``) goes into the name, so the next writer of that
    shard knows whose leftover a temporary file is: ``.<name>.<tag>.<8 hex>.tmp``.
    """
    middle = f".{tag}" if tag else ""
    return path.with_name(f".{path.name}{middle}.{secrets.token_hex(4)}.tmp")


def check_output_file(path: Path, flag: str) -> None:
    """Refuse an output path that is a directory, lies under a file or cannot be written, naming
    ``flag``; called before the work whose result it will hold."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory.", f"Pass a file name to {flag}.")
    _check_parents(path, flag)
    _check_writable(path, flag)


def check_output_dir(path: Path, flag: str, hint: str | None = None, what: str = "directory") -> None:
    """Refuse an output directory (existing or to be made) that is a file, lies under a file or
    cannot be written, naming ``flag`` (and ``what`` the directory is); called before any work,
    so none is lost to it. ``hint`` replaces the advice for an unwritable one."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a {what}.", f"Pass a {what} to {flag}.")
    _check_parents(path, flag)
    _check_writable(path, flag, hint)


def _check_parents(path: Path, flag: str) -> None:
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserError(f"{flag} {path} lies under {blocking}, which is a file.", f"Pass another path to {flag}.")


def _check_writable(path: Path, flag: str, hint: str | None = None) -> None:
    """Create and remove a file in the nearest existing directory of ``path`` (itself included).

    Permission bits do not stop root and say nothing of a read-only mount, so try it.
    """
    directory = next((p for p in (path, *path.parents) if p.is_dir()), Path.cwd())
    try:
        fd, probe = tempfile.mkstemp(prefix=".dps-write-test.", suffix=".tmp", dir=directory)
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        raise UserError(f"{flag} {path} cannot be written ({directory}: {err.strerror}).",
                        hint or f"Pass a writable path to {flag}.") from None
    try:
        os.close(fd)
    finally:  # a stop signal (stop_before_start raises) must not leave the probe behind
        os.unlink(probe)


def fsync_file(path: Path) -> None:
    """Flush a written file's content to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename still happened
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: Path, write: Callable[[Path], object], tag: str | None = None) -> Path:
    """Call ``write(tmp)`` to produce the file at a temporary path, then move it to ``path``.

    Use this for writers that want a path (pyarrow, polars, matplotlib). The temporary file is
    removed if ``write`` raises, so failures leave no debris (only SIGKILL or a power cut can;
    `RunStore` removes such leftovers of sample parts when the next writer starts).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, tag)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON (trailing newline) to ``path`` atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def storage_error(err: OSError, doing: str) -> UserError | None:
    """A one-sentence error for a write that failed for a reason the user can fix, else None."""
    if err.errno not in STORAGE_ERRNOS:
        return None
    reason = "no space left on the device" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
    return UserError(f"Could not {doing}: {reason}.", "Free space or choose a writable --out, then rerun the same command to resume.")
