"""`RunStore`: one run directory — its manifest, its Parquet sample parts and its grades.

Layout (DESIGN §3)::

    runs/<run>/manifest.json        what was run; only its "config" decides "same run"
    runs/<run>/samples/part-*.parquet  sample rows (SAMPLE_SCHEMA), each part written atomically
    runs/<run>/grades.parquet       written by `dps evaluate`; samples are never rewritten

Parts are only ever added, never overwritten, so a crashed or interrupted `dps sample` leaves
every finished part intact and a rerun resumes from `completed_keys()`. Reports read samples
only through `scan()`, which checks each part's schema version and reads its data whole first.

One writer per shard: `writing()` holds the shard's OS lock (runs/locks.py), removes temporary
part files that killed writers left, and appends the writer to the manifest's ``writers``. If
two writers ever stored the same (question, seed), readers keep the first row and warn.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from dps_cli.errors import UserError
from dps_cli.runs.atomic import atomic_write_json, atomic_write_with, storage_error
from dps_cli.runs.grades import grades_fingerprint, read_grades, write_grades
from dps_cli.runs.locks import WriterLock, acquire_writer, remove_stale_temporaries, run_mutex
from dps_cli.runs.manifest import normalized, read_manifest_file
from dps_cli.runs.parts import CorruptPart, check_part, list_parts, move_aside, read_part_keys
from dps_cli.runs.schema import ROW_KEY, SAMPLE_SCHEMA

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SAMPLES_DIR = "samples"
GRADES_NAME = "grades.parquet"
_PART_INDEX = re.compile(r"^part-(\d+)-")


class RunStore:
    """Reads and writes one run directory; see the module docstring for the layout."""

    # Parts read whole once per process: (device, inode, size, mtime) -> their keys. Parts are
    # never rewritten, so a file with the same identity holds the same rows; `dps evaluate`
    # opens a run several times and would otherwise read every part several times.
    _verified: ClassVar[dict[tuple[int, int, int, int], list[tuple[str, int]]]] = {}

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.samples_dir = self.root / SAMPLES_DIR
        self.manifest_path = self.root / MANIFEST_NAME
        self.grades_path = self.root / GRADES_NAME
        self._warned_duplicates = False

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    @classmethod
    def open_existing(cls, root: Path) -> RunStore:
        """Open a run that `dps sample` wrote; a directory without a manifest is a user error."""
        store = cls(root)
        if store.root.exists() and not store.root.is_dir():
            raise UserError(
                f"{store.root} is a file, not a run directory.",
                "Pass a run directory written by `dps sample --out DIR`.",
            )
        if not store.manifest_path.is_file():
            what = "is not a file" if store.manifest_path.exists() else "is missing"
            raise UserError(
                f"No run at {store.root}: manifest.json {what}.",
                "Pass a run directory written by `dps sample --out DIR`.",
            )
        return store

    # -- manifest ---------------------------------------------------------------------------

    def ensure_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest of a new run, or check that an existing run has the same config.

        Only ``manifest["config"]`` decides whether two invocations are the same run: the
        creation time, command line and versions may differ between a run and its resumption.
        For the same run, top-level keys the stored manifest lacks (e.g. "model", known only
        once the model is loaded) are added; stored values are never changed.
        """
        self._make_directories()
        with run_mutex(self.root):
            self._ensure_manifest(manifest)

    def _ensure_manifest(self, manifest: dict[str, Any]) -> None:
        if not self.manifest_path.exists():
            if list_parts(self.samples_dir):
                raise UserError(
                    f"Output directory {self.root} holds samples but no manifest.json.",
                    "Use another --out or remove that directory.",
                )
            self._write_manifest(manifest)
            return
        stored_manifest = self.read_manifest()
        stored = normalized(stored_manifest.get("config", {}))
        wanted = normalized(manifest.get("config", {}))
        differing = sorted(
            key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key)
        )
        if differing:
            raise UserError(
                f"Output directory {self.root} holds a different run "
                f"(differs in: {', '.join(differing)}).",
                "Use another --out or remove that directory.",
            )
        additions = {
            k: v for k, v in manifest.items() if v is not None and stored_manifest.get(k) is None
        }
        if additions:
            self._write_manifest({**stored_manifest, **additions})

    def _make_directories(self) -> None:
        """Create the run and samples directories; a path that is a file is a user error."""
        for path in (self.root, self.samples_dir):
            if path.exists() and not path.is_dir():
                raise UserError(
                    f"{path} is a file, not a run directory.",
                    "Pass a new directory, or one written by `dps sample`, to --out.",
                )
        try:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a parent is a file, no permission, disk full
            raise UserError(
                f"Cannot create the run directory {self.root}: {err.strerror}.",
                "Pass a directory you can write to --out.",
            ) from None

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        try:
            atomic_write_json(self.manifest_path, manifest)
        except OSError as err:
            raise storage_error(err, f"write {self.manifest_path}") or err from None

    @contextlib.contextmanager
    def writing(self, shard: tuple[int, int], command: str) -> Iterator[WriterLock]:
        """Be the one writer of ``shard`` while the block runs (see runs/locks.py).

        Refuses (UserError) if another process writes the same shard, or the run with another
        sharding. On entry, removes temporary part files that killed writers left and appends
        this writer (shard, command, pid, host, time) to the manifest's ``writers``.
        """
        lock = acquire_writer(self.root, shard, command)
        try:
            with run_mutex(self.root):
                remove_stale_temporaries(self.root, self.samples_dir, lock)
                manifest = self.read_manifest()
                writers = manifest.get("writers")
                writers = writers if isinstance(writers, list) else []
                self._write_manifest({**manifest, "writers": [*writers, lock.record]})
            yield lock
        finally:
            lock.release()

    def read_manifest(self) -> dict[str, Any]:
        """The stored manifest as a dict; UserError if it is missing or unusable."""
        return read_manifest_file(self.manifest_path, self.root)

    # -- samples ----------------------------------------------------------------------------

    def completed_keys(self, repair: bool = False) -> set[tuple[str, int]]:
        """The (question_id, seed) pairs already stored; resume skips them.

        Every part is read whole. With ``repair`` (the writer, under its lock) a corrupt part is
        moved aside to ``*.corrupt`` with one warning, so its samples are drawn again; without
        it a corrupt part is a `CorruptPart` error naming the file.
        """
        keys_by_part = self._checked_parts(repair)
        self._warn_duplicates(keys_by_part)
        return {key for keys in keys_by_part.values() for key in keys}

    def _checked_parts(self, repair: bool) -> dict[Path, list[tuple[str, int]]]:
        checked: dict[Path, list[tuple[str, int]]] = {}
        for part in list_parts(self.samples_dir):
            try:
                checked[part] = self._part_keys(part)
            except CorruptPart as err:
                if not repair:
                    raise
                moved = move_aside(part)
                if moved is not None:
                    logger.warning("%s Moved it aside to %s; its samples are drawn again.", err.message, moved.name)
        return checked

    def _part_keys(self, part: Path) -> list[tuple[str, int]]:
        """A part's keys, after checking its schema and reading its data (cached per file state)."""
        try:
            stat = part.stat()
        except FileNotFoundError:
            return []  # moved aside by another writer meanwhile
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._verified.get(identity)
        if cached is not None:
            return cached
        check_part(part)
        keys = read_part_keys(part)
        self._verified[identity] = keys
        return keys

    def _warn_duplicates(self, keys_by_part: Mapping[Path, list[tuple[str, int]]]) -> int:
        """Count rows whose (question, seed) an earlier row has; warn once per store."""
        seen: set[tuple[str, int]] = set()
        duplicates = 0
        for keys in keys_by_part.values():
            for key in keys:
                duplicates += key in seen
                seen.add(key)
        if duplicates and not self._warned_duplicates:
            self._warned_duplicates = True
            logger.warning(
                "Run %s holds %d duplicate (question, seed) rows (two writers stored the same "
                "samples); reading the first row of each.", self.root, duplicates,
            )  # fmt: skip
        return duplicates

    def write_part(self, rows: Sequence[Mapping[str, Any]], tag: str | None = None) -> Path:
        """Store ``rows`` (dicts with exactly the SAMPLE_SCHEMA columns) as a new part.

        The part is written to a hidden temporary file (named with the writer's shard ``tag``),
        fsynced, then renamed to a fresh name, so readers never see half a part and an existing
        part is never overwritten. Pages carry checksums, so later damage is detected on read.
        OSError (disk full, ...) propagates; `storage_error` turns it into a sentence.
        """
        if not rows:
            raise ValueError("write_part needs at least one row")
        _check_row_columns(rows)
        table = pa.Table.from_pylist([dict(row) for row in rows], schema=SAMPLE_SCHEMA)
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        target = self._fresh_part_path()
        return atomic_write_with(target, lambda tmp: _write_parquet(table, tmp), tag=tag)

    def _fresh_part_path(self) -> Path:
        """``part-<next index>-<8 hex>.parquet``, a name no existing part has."""
        indices = [
            int(match.group(1))
            for part in list_parts(self.samples_dir)
            if (match := _PART_INDEX.match(part.name))
        ]
        index = max(indices, default=-1) + 1
        while True:
            path = self.samples_dir / f"part-{index:05d}-{secrets.token_hex(4)}.parquet"
            if not path.exists():
                return path

    def scan(self) -> pl.LazyFrame:
        """All sample rows as a polars LazyFrame, after checking every part's schema version."""
        import polars as pl

        parts = list_parts(self.samples_dir)
        if not parts:
            raise UserError(
                f"Run {self.root} has no samples yet.",
                "Run `dps sample` with this --out first (a rerun resumes an interrupted run).",
            )
        keys_by_part = self._checked_parts(repair=False)
        polars_schema = pl.DataFrame(SAMPLE_SCHEMA.empty_table()).schema
        frame = pl.scan_parquet(
            [str(part) for part in keys_by_part], schema=polars_schema, extra_columns="ignore",
            missing_columns="insert",  # a column added since a part was written reads as null
        )
        if self._warn_duplicates(keys_by_part):
            frame = frame.unique(subset=list(ROW_KEY), keep="first", maintain_order=True)
        return frame

    def read_samples(self) -> pl.DataFrame:
        """All sample rows, collected."""
        return self.scan().collect()

    # -- grades -----------------------------------------------------------------------------

    def write_grades(self, grades: pl.DataFrame, samples_fingerprint: str | None = None) -> Path:
        """Replace grades.parquet atomically; ``samples_fingerprint`` records what was graded."""
        return write_grades(self.grades_path, grades, samples_fingerprint)

    def read_grades(self) -> pl.DataFrame | None:
        """The stored grades, or None if the run was never graded."""
        return read_grades(self.grades_path)

    def grades_fingerprint(self) -> str | None:
        """The samples fingerprint stored with the grades (None: none, unreadable or unstamped).

        Grades are derived data: an unreadable grades file only means "grade again", so it
        reads as having no fingerprint instead of stopping the evaluation.
        """
        return grades_fingerprint(self.grades_path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, write_page_checksum=True)


def _check_row_columns(rows: Sequence[Mapping[str, Any]]) -> None:
    """Every row must carry exactly the schema's columns: a typo would otherwise become null."""
    expected = set(SAMPLE_SCHEMA.names)
    for row in rows:
        keys = set(row)
        if keys != expected:
            missing = sorted(expected - keys)
            unknown = sorted(keys - expected)
            raise ValueError(
                f"sample row does not match SAMPLE_SCHEMA (missing: {missing}, unknown: {unknown})"
            )
