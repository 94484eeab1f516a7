"""Finding and checking the Parquet files of a run before anything reads them.

A part must be ours (carry the ``dps_schema_version`` metadata and the expected columns) and
must not come from a newer major schema version than this dps understands. Every failure names
the file, so the user knows which one to inspect or remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dps_cli.errors import UserError
from dps_cli.runs.schema import SAMPLE_SCHEMA, SCHEMA_VERSION

VERSION_KEY = b"dps_schema_version"
PART_GLOB = "part-*.parquet"


def list_parts(samples_dir: Path) -> list[Path]:
    """The sample parts of a run, in name (= write) order; hidden temporary files are skipped."""
    if not samples_dir.is_dir():
        return []
    return sorted(samples_dir.glob(PART_GLOB))


def major_version(version: str) -> int:
    """The major number of a ``MAJOR.MINOR`` version string (ValueError if malformed)."""
    return int(version.split(".", 1)[0])


def check_part(path: Path, required: Sequence[str] = SAMPLE_SCHEMA.names) -> dict[bytes, bytes]:
    """Refuse a corrupted, foreign or too-new Parquet file; return its key-value metadata."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise UserError(
            f"{path} is not a readable Parquet file ({err}).",
            "Remove it (a rerun of `dps sample` recreates missing samples).",
        ) from None
    metadata = dict(schema.metadata or {})
    raw_version = metadata.get(VERSION_KEY)
    missing = [name for name in required if name not in schema.names]
    if raw_version is None or missing:
        what = "has no dps schema version" if raw_version is None else f"lacks columns {missing}"
        raise UserError(
            f"{path} is not a dps run file: it {what}.",
            "Move files that dps did not write out of the run directory.",
        )
    version = raw_version.decode(errors="replace")
    try:
        major = major_version(version)
    except ValueError:
        raise UserError(
            f"{path} has a malformed dps schema version {version!r}.",
            "Move files that dps did not write out of the run directory.",
        ) from None
    if major > major_version(SCHEMA_VERSION):
        raise UserError(
            f"{path} was written with run schema {version}, newer than the {SCHEMA_VERSION} "
            "this dps reads.",
            "Upgrade dps (pip install -U dps-cli) to read this run.",
        )
    return metadata
