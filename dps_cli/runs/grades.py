"""A run's grades.parquet: written by `dps evaluate`, stamped with the samples it graded.

Grades are derived data: an unreadable grades file only means "grade again".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from dps_cli.runs.atomic import atomic_write_with
from dps_cli.runs.parts import CorruptPart, check_part
from dps_cli.runs.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

FINGERPRINT_KEY = b"dps_samples_fingerprint"
REGRADE_HINT = "Run `dps evaluate --regrade` to grade the run again."

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


def write_grades(path: Path, grades: pl.DataFrame, samples_fingerprint: str | None = None) -> Path:
    """Replace the grades file atomically; ``samples_fingerprint`` records what was graded."""
    metadata = dict(GRADE_SCHEMA.metadata or {})
    if samples_fingerprint is not None:
        metadata[FINGERPRINT_KEY] = samples_fingerprint.encode()
    schema = GRADE_SCHEMA.with_metadata(metadata)
    table = grades.select(GRADE_SCHEMA.names).to_arrow().cast(schema)
    return atomic_write_with(path, lambda tmp: pq.write_table(table, tmp))


def read_grades(path: Path) -> pl.DataFrame | None:
    """The stored grades, or None if the run was never graded; a corrupt file is named."""
    import polars as pl

    if not path.exists():
        return None
    check_part(path, required=GRADE_SCHEMA.names, hint=REGRADE_HINT)
    try:
        return pl.read_parquet(path, columns=GRADE_SCHEMA.names)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise CorruptPart(f"{path} is corrupt ({err}).", REGRADE_HINT) from None


def grades_fingerprint(path: Path) -> str | None:
    """The samples fingerprint stored with the grades (None: none, unreadable or unstamped)."""
    if not path.exists():
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as err:
        logger.warning("Ignoring unreadable %s (%s); grading again", path, err)
        return None
    value = metadata.get(FINGERPRINT_KEY)
    return value.decode() if value is not None else None
