"""`dps passk` wiring: table, --json, --plot and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from tests.factories import boxed_rows, use_fake_task, write_run

RUNNER = CliRunner()
ROWS = {"arith-0001": [True, False, False, False], "arith-0002": [True, True, False, True]}


@pytest.fixture(autouse=True)
def fake_task(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_task(monkeypatch)


def test_passk_table_and_plot(tmp_path: Path) -> None:
    run = write_run(tmp_path / "k8", boxed_rows(ROWS))
    plot = tmp_path / "passk.png"
    result = RUNNER.invoke(app, ["passk", str(run), "--plot", str(plot)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "87.5%" in result.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_passk_json_is_parseable(tmp_path: Path) -> None:
    run = write_run(tmp_path / "k8", boxed_rows({**ROWS, "arith-0003": [True]}))
    result = RUNNER.invoke(app, ["passk", str(run), "--json"])
    assert result.exit_code == 0, result.output
    (curve,) = json.loads(result.stdout)["runs"]
    assert [point["k"] for point in curve["points"]] == [1, 2, 3, 4]
    assert curve["points"][1]["excluded"] == ["arith-0003"]


def test_passk_missing_run_exits_2(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["passk", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "manifest.json is missing" in result.stderr


def test_passk_help_has_an_example() -> None:
    result = RUNNER.invoke(app, ["passk", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example: dps passk" in result.stdout
