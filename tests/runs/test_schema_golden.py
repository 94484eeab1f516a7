"""The live sample schema must equal tests/golden/run_schema.txt (bump SCHEMA_VERSION on change)."""

from __future__ import annotations

from pathlib import Path

from dps_cli.runs.schema import describe_schema

GOLDEN = Path(__file__).parents[1] / "golden" / "run_schema.txt"


def test_schema_matches_golden_file() -> None:
    assert GOLDEN.read_text(encoding="utf-8") == describe_schema(), (
        "The run schema changed: bump SCHEMA_VERSION, add a read test on an old part, "
        "then update tests/golden/run_schema.txt."
    )
