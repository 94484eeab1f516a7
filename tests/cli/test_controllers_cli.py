"""Wiring of `dps collect`, `dps train-controller` and `dps controllers`: output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.cli.train import KindChoice
from dps_cli.controllers.kinds import CONTROLLER_KINDS
from tests.controllers.fixed_k_runs import Q0, ladder_runs, make_run
from tests.controllers.planted import write_planted

RUNNER = CliRunner()
WIDE = {"COLUMNS": "200"}


def test_collect_reports_rows_questions_and_positives(tmp_path: Path) -> None:
    out = tmp_path / "table.parquet"
    args = ["collect", *map(str, ladder_runs(tmp_path)), "--out", str(out)]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"Wrote 15 rows (2 questions, 13 positive labels) to {out}." in result.stdout
    assert "Dropped 2 rows whose (question, seed) has no k=8 sample." in result.stdout
    assert out.is_file()


def test_collect_of_mixed_models_exits_2_with_one_sentence(tmp_path: Path) -> None:
    runs = [make_run(tmp_path, 2, {Q0: True}), make_run(tmp_path, 8, {Q0: True}, model="other")]
    result = RUNNER.invoke(app, ["collect", *map(str, runs), "--out", str(tmp_path / "t.parquet")])
    assert result.exit_code == 2
    assert "Runs differ in model: tiny-test-model (k2) vs other (k8)." in result.stderr
    assert "Traceback" not in result.output


def test_train_list_show_remove(tmp_path: Path) -> None:
    table = write_planted(tmp_path / "t.parquet", "entropy", questions=20)
    registry = ["--registry", str(tmp_path / "reg")]
    train = [
        "train-controller",
        "gbdt",
        "--data",
        str(table),
        "--name",
        "c",
        "--seed",
        "2",
        *registry,
    ]
    result = RUNNER.invoke(app, train, env=WIDE)
    assert result.exit_code == 0, result.output
    assert "Held-out metrics" in result.stdout and "ROC-AUC" in result.stdout
    assert "<- recommended" in result.stdout and "fixed k=8" in result.stdout
    assert f"Saved controller 'c' to {tmp_path / 'reg' / 'c'}." in result.stdout

    again = RUNNER.invoke(app, train)
    assert again.exit_code == 2
    assert "A controller named 'c' already exists" in again.stderr and "--force" in again.stderr
    assert RUNNER.invoke(app, [*train, "--force"]).exit_code == 0

    listed = RUNNER.invoke(app, ["controllers", "list", *registry], env=WIDE)
    assert listed.exit_code == 0 and "gbdt" in listed.stdout and "tiny-test-model" in listed.stdout
    shown = RUNNER.invoke(app, ["controllers", "show", "c", *registry], env=WIDE)
    assert shown.exit_code == 0 and "Tau sweep" in shown.stdout and "approximate" in shown.stdout
    assert (
        '"kind": "gbdt"'
        in RUNNER.invoke(app, ["controllers", "show", "c", "--json", *registry]).stdout
    )

    missing = RUNNER.invoke(app, ["controllers", "show", "d", *registry])
    assert missing.exit_code == 2 and "Unknown controller 'd'" in missing.stderr
    assert "Available: c." in missing.stderr

    removed = RUNNER.invoke(app, ["controllers", "remove", "c", *registry])
    assert removed.exit_code == 0 and "Removed controller 'c'" in removed.stdout
    assert "No controllers in" in RUNNER.invoke(app, ["controllers", "list", *registry]).stdout


def test_train_controller_on_a_missing_table_exits_2(tmp_path: Path) -> None:
    args = [
        "train-controller",
        "mlp-h",
        "--data",
        str(tmp_path / "no.parquet"),
        "--registry",
        str(tmp_path),
    ]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 2
    assert f"Training table {tmp_path / 'no.parquet'} does not exist." in result.stderr


def test_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    result = RUNNER.invoke(
        app, ["train-controller", "forest", "--data", str(tmp_path / "t.parquet")]
    )
    assert result.exit_code == 2


def test_kind_choices_match_the_registry() -> None:
    assert sorted(choice.value for choice in KindChoice) == CONTROLLER_KINDS.names()


@pytest.mark.parametrize(
    "command",
    [
        ["collect"],
        ["train-controller"],
        ["controllers", "list"],
        ["controllers", "show"],
        ["controllers", "remove"],
    ],
)
def test_help_shows_an_example(command: list[str]) -> None:
    result = RUNNER.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0
    assert "Example: dps " in result.stdout
