"""`dps evaluate` wiring: output, --json, and one-sentence errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.runs.store import RunStore
from tests.factories import boxed_rows, manifest_for, run_config, use_fake_task, write_run

RUNNER = CliRunner()
ROWS = {"arith-0001": [True, False], "arith-0002": [True, True]}


@pytest.fixture(autouse=True)
def fake_task(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_task(monkeypatch)


def test_evaluate_prints_the_table(tmp_path: Path) -> None:
    base = write_run(tmp_path / "k8", boxed_rows(ROWS))
    other = write_run(tmp_path / "dps", boxed_rows(ROWS, method="dps", controller="gbdt", tau=0.5))
    result = RUNNER.invoke(app, ["evaluate", str(base), str(other)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "75.0%" in result.stdout
    assert "dps gbdt τ=0.5" in result.stdout
    assert "Against k8" in result.stdout
    assert (base / "grades.parquet").exists()


def test_evaluate_json_is_parseable(tmp_path: Path) -> None:
    run = write_run(tmp_path / "k8", boxed_rows(ROWS))
    result = RUNNER.invoke(app, ["evaluate", str(run), "--json", "--regrade", "--workers", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runs"][0]["accuracy"] == 0.75
    assert data["runs"][0]["samples"] == 4
    assert data["comparisons"] == []


def test_missing_run_exits_2_with_one_sentence(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert f"No run at {tmp_path / 'nope'}: manifest.json is missing." in result.stderr
    assert "Traceback" not in result.output


def test_run_without_samples_exits_2(tmp_path: Path) -> None:
    RunStore(tmp_path / "empty").ensure_manifest(manifest_for(run_config()))
    result = RUNNER.invoke(app, ["evaluate", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "has no samples yet" in result.stderr


def test_foreign_parquet_exits_2_naming_the_file(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", boxed_rows(ROWS))
    pl.DataFrame({"x": [1]}).write_parquet(run / "samples" / "part-00009-zzzzzzzz.parquet")
    result = RUNNER.invoke(app, ["evaluate", str(run)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "part-00009-zzzzzzzz.parquet is not a dps run file" in result.stderr


def test_newer_schema_exits_2(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    run = write_run(tmp_path / "run", boxed_rows(ROWS))
    (part,) = (run / "samples").glob("part-*.parquet")
    table = pq.read_table(part)
    pq.write_table(
        table.replace_schema_metadata({b"dps_schema_version": b"3.1"}),
        run / "samples" / "part-00001-newer000.parquet",
    )
    result = RUNNER.invoke(app, ["evaluate", str(run)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "was written with run schema 3.1" in result.stderr
    assert "Upgrade dps" in result.stderr


def test_help_has_an_example() -> None:
    result = RUNNER.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "dps evaluate runs/math500-k8 runs/math500-dps-gbdt" in result.stdout
    assert "dps evaluate runs/alpacaeval-power --judge smollm2-135m" in result.stdout
