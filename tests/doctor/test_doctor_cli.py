"""Wiring of `dps doctor`: every line printed, JSON for scripts, paths printed literally, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app

RUNNER = CliRunner()
LINES = ["torch", "cuda", "mps", "cpu", "device auto", "hf", "vllm", "backend auto", "bubblewrap",
         "sbatch", "sinfo", "controller", "hub models", "converted models", "embedded model",
         "controllers", "data"]  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A DPS_DATA_DIR whose name holds rich markup, which must print as typed."""
    data = tmp_path / "[bold]data"
    data.mkdir()
    return {"DPS_DATA_DIR": str(data), "DPS_HOME": str(tmp_path / "home"), "COLUMNS": "400"}


def test_doctor_prints_every_line_and_exits_0(env: dict[str, str]) -> None:
    result = RUNNER.invoke(app, ["doctor"], env=env)
    assert result.exit_code == 0, result.output
    rows = [line.split("│") for line in result.stdout.splitlines() if "│" in line]  # not the header
    assert [row[0].strip() for row in rows] == LINES
    assert all(row[1].strip() in ("yes", "no", "warn") for row in rows)
    assert f"DPS_DATA_DIR={env['DPS_DATA_DIR']} holds none of" in result.stdout


def test_doctor_json_has_the_same_lines(env: dict[str, str]) -> None:
    result = RUNNER.invoke(app, ["doctor", "--json"], env=env)
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["checks"]
    assert [c["name"] for c in checks] == LINES
    assert {tuple(c) for c in checks} == {("group", "name", "status", "detail")}
    assert {c["status"] for c in checks} <= {"yes", "no", "warn"}


def test_a_wrong_option_exits_2() -> None:
    result = RUNNER.invoke(app, ["doctor", "--jsn"])
    assert result.exit_code == 2
    assert "No such option" in result.output
