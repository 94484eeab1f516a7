"""Finding and checking the Parquet files of a run before anything reads them.

A part must be ours (carry the ``dps_schema_version`` metadata and the expected columns) and
must not come from a newer major schema version than this dps understands. Every failure names
the file, so the user knows which one to inspect or remove. `read_part_keys` reads a part's
data whole (page checksums verified, written since schema 1.0 parts carry them), so a part with
an intact footer but a damaged page is found before a report trips over it. A corrupt part is
never deleted: `move_aside` renames it to ``*.corrupt``, out of the ``part-*.parquet`` glob.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dps_cli.errors import UserError
from dps_cli.runs.schema import REQUIRED_COLUMNS, SCHEMA_VERSION

VERSION_KEY = b"dps_schema_version"
PART_GLOB = "part-*.parquet"
CORRUPT_SUFFIX = ".corrupt"
RESAMPLE_HINT = (
    "Rerun the `dps sample` command of this run: it moves a corrupt part aside (to *.corrupt) "
    "and samples its rows again."
)


class CorruptPart(UserError):
    """A Parquet file whose footer or data cannot be read back."""


def list_parts(samples_dir: Path) -> list[Path]:
    """The sample parts of a run, in name (= write) order; hidden temporary files are skipped."""
    if not samples_dir.is_dir():
        return []
    return sorted(samples_dir.glob(PART_GLOB))


def major_version(version: str) -> int:
    """The major number of a ``MAJOR.MINOR`` version string (ValueError if malformed)."""
    return int(version.split(".", 1)[0])


def check_part(
    path: Path, required: Sequence[str] = REQUIRED_COLUMNS, hint: str = RESAMPLE_HINT
) -> dict[bytes, bytes]:
    """Refuse a corrupted, foreign or too-new Parquet file; return its key-value metadata."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise CorruptPart(f"{path} is not a readable Parquet file ({_first_line(err)}).", hint) from None
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


def read_part_keys(path: Path) -> list[tuple[str, int]]:
    """Read a checked part whole (every page, checksums verified); return its (question, seed) keys."""
    try:
        table = pq.read_table(path, page_checksum_verification=True)
        ids = table.column("question_id").to_pylist()
        seeds = table.column("seed").to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise CorruptPart(f"{path} is corrupt ({_first_line(err)}).", RESAMPLE_HINT) from None
    return list(zip(ids, seeds, strict=True))


def move_aside(path: Path) -> Path | None:
    """Rename a corrupt part to ``<name>.corrupt`` (never overwriting); None if it is gone already."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    number = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{number}{CORRUPT_SUFFIX}")
        number += 1
    try:
        os.rename(path, target)
    except FileNotFoundError:  # another writer moved it first
        return None
    return target


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
