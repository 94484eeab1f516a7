"""`RunStore`: one run directory — its manifest, its Parquet sample parts and its grades.

Layout (DESIGN §3)::

    runs/<run>/manifest.json        what was run; only its "config" decides "same run"
    runs/<run>/samples/part-*.parquet  sample rows (SAMPLE_SCHEMA), each part written atomically
    runs/<run>/grades.parquet       written by `dps evaluate`; samples are never rewritten

Parts are only ever added, never overwritten, so a crashed or interrupted `dps sample` leaves
every finished part intact and a rerun resumes from `completed_keys()`. Reports read samples
only through `scan()`, which checks each part's schema version first.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dps_cli.errors import UserError
from dps_cli.runs.atomic import atomic_write_json, atomic_write_with
from dps_cli.runs.parts import check_part, list_parts
from dps_cli.runs.schema import SAMPLE_SCHEMA, SCHEMA_VERSION

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SAMPLES_DIR = "samples"
GRADES_NAME = "grades.parquet"
FINGERPRINT_KEY = b"dps_samples_fingerprint"

GRADE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("question_id", pa.string()),
        ("seed", pa.int32()),
        ("answer", pa.string()),  # as extracted at grading time; null if none found
        ("correct", pa.bool_()),  # null when the task cannot grade locally (AlpacaEval)
        ("grade_detail", pa.string()),
    ],
    metadata={b"dps_schema_version": SCHEMA_VERSION.encode()},
)

_PART_INDEX = re.compile(r"^part-(\d+)-")


class RunStore:
    """Reads and writes one run directory; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.samples_dir = self.root / SAMPLES_DIR
        self.manifest_path = self.root / MANIFEST_NAME
        self.grades_path = self.root / GRADES_NAME

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    @classmethod
    def open_existing(cls, root: Path) -> RunStore:
        """Open a run that `dps sample` wrote; a directory without a manifest is a user error."""
        store = cls(root)
        if not store.manifest_path.is_file():
            raise UserError(
                f"No run at {store.root}: manifest.json is missing.",
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
        if not self.manifest_path.exists():
            if list_parts(self.samples_dir):
                raise UserError(
                    f"Output directory {self.root} holds samples but no manifest.json.",
                    "Use another --out or remove that directory.",
                )
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.manifest_path, manifest)
            return
        stored_manifest = self.read_manifest()
        stored = _normalized(stored_manifest.get("config", {}))
        wanted = _normalized(manifest.get("config", {}))
        differing = sorted(
            key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key)
        )
        if differing:
            raise UserError(
                f"Output directory {self.root} holds a different run "
                f"(differs in: {', '.join(differing)}).",
                "Use another --out or remove that directory.",
            )
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        additions = {
            k: v for k, v in manifest.items() if v is not None and stored_manifest.get(k) is None
        }
        if additions:
            atomic_write_json(self.manifest_path, {**stored_manifest, **additions})

    def read_manifest(self) -> dict[str, Any]:
        """The stored manifest as a dict."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(
                f"No run at {self.root}: manifest.json is missing.",
                "Pass a run directory written by `dps sample --out DIR`.",
            ) from None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(
                f"Manifest {self.manifest_path} is not valid JSON ({err.msg}, line {err.lineno}).",
                "Restore it or remove the run directory and sample again.",
            ) from None
        if not isinstance(manifest, dict):
            raise UserError(f"Manifest {self.manifest_path} is not a JSON object.")
        return manifest

    # -- samples ----------------------------------------------------------------------------

    def completed_keys(self) -> set[tuple[str, int]]:
        """The (question_id, seed) pairs already stored; resume skips them."""
        parts = list_parts(self.samples_dir)
        keys: set[tuple[str, int]] = set()
        for part in parts:
            check_part(part)
            table = pq.read_table(part, columns=["question_id", "seed"])
            ids = table.column("question_id").to_pylist()
            seeds = table.column("seed").to_pylist()
            keys.update(zip(ids, seeds, strict=True))
        return keys

    def write_part(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Store ``rows`` (dicts with exactly the SAMPLE_SCHEMA columns) as a new part.

        The part is written to a hidden temporary file, fsynced, then renamed to a fresh name,
        so readers never see half a part and an existing part is never overwritten.
        """
        if not rows:
            raise ValueError("write_part needs at least one row")
        _check_row_columns(rows)
        table = pa.Table.from_pylist([dict(row) for row in rows], schema=SAMPLE_SCHEMA)
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        target = self._fresh_part_path()
        return atomic_write_with(target, lambda tmp: pq.write_table(table, tmp))

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
        for part in parts:
            check_part(part)
        polars_schema = pl.DataFrame(SAMPLE_SCHEMA.empty_table()).schema
        return pl.scan_parquet(
            [str(part) for part in parts], schema=polars_schema, extra_columns="ignore"
        )

    def read_samples(self) -> pl.DataFrame:
        """All sample rows, collected."""
        return self.scan().collect()

    # -- grades -----------------------------------------------------------------------------

    def write_grades(self, grades: pl.DataFrame, samples_fingerprint: str | None = None) -> Path:
        """Replace grades.parquet atomically; ``samples_fingerprint`` records what was graded."""
        metadata = dict(GRADE_SCHEMA.metadata or {})
        if samples_fingerprint is not None:
            metadata[FINGERPRINT_KEY] = samples_fingerprint.encode()
        schema = GRADE_SCHEMA.with_metadata(metadata)
        table = grades.select(GRADE_SCHEMA.names).to_arrow().cast(schema)
        return atomic_write_with(self.grades_path, lambda tmp: pq.write_table(table, tmp))

    def read_grades(self) -> pl.DataFrame | None:
        """The stored grades, or None if the run was never graded."""
        import polars as pl

        if not self.grades_path.exists():
            return None
        check_part(self.grades_path, required=GRADE_SCHEMA.names)
        return pl.read_parquet(self.grades_path, columns=GRADE_SCHEMA.names)

    def grades_fingerprint(self) -> str | None:
        """The samples fingerprint stored with the grades (None: none, unreadable or unstamped).

        Grades are derived data: an unreadable grades file only means "grade again", so it
        reads as having no fingerprint instead of stopping the evaluation.
        """
        if not self.grades_path.exists():
            return None
        try:
            metadata = pq.read_schema(self.grades_path).metadata or {}
        except (pa.ArrowException, OSError) as err:
            logger.warning("Ignoring unreadable %s (%s); grading again", self.grades_path, err)
            return None
        value = metadata.get(FINGERPRINT_KEY)
        return value.decode() if value is not None else None


def _normalized(config: Any) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists, keys become strings)."""
    value = json.loads(json.dumps(config))
    return value if isinstance(value, dict) else {"config": value}


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
