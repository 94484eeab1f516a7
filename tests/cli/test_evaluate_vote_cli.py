"""`dps evaluate --vote/--match/--plot` wiring: tables, the match sentence, the PNG, exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from tests.factories import run_config, sample_row, write_run
from tests.report.test_voting import ANSWERS, LOGP, answer_rows, fake_scores, temperature_run

RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.factories import use_fake_task

    use_fake_task(monkeypatch)
    monkeypatch.setattr("dps_cli.pipeline.scoring.score_completions", fake_scores)


def _power(tmp_path: Path) -> Path:
    rows = [sample_row(question_id=q, seed=0, reference=q[-1], completion=f"\\boxed{{{q[-1]}}}",
                       tokens_generated=140) for q in ANSWERS]  # fmt: skip
    return write_run(tmp_path / "k8", rows)


def test_vote_match_and_plot(tmp_path: Path) -> None:
    power, temperature = _power(tmp_path), temperature_run(tmp_path)
    plot = tmp_path / "acc.png"
    result = RUNNER.invoke(
        app, ["evaluate", str(power), str(temperature), "--match", str(power), "--plot", str(plot)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "maj@3 @ tokens of k8" in result.stdout
    assert "N = 3 samples of t025 (temperature T=0.25) cost 150.0 tokens / question, the closest " \
        "to k8's 140.0." in result.stdout.replace("\n", " ")  # fmt: skip
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vote_larger_than_seeds_exits_2(tmp_path: Path) -> None:
    run = temperature_run(tmp_path)
    result = RUNNER.invoke(app, ["evaluate", str(run), "--vote", "8"])
    assert result.exit_code == 2
    assert "--vote 8 needs 8 seeds of every question, but run t025 stores only 4" in result.stderr
    assert "Traceback" not in result.output


def test_mixed_tasks_exit_2(tmp_path: Path) -> None:
    run = temperature_run(tmp_path)
    other = write_run(tmp_path / "gsm", answer_rows(ANSWERS, LOGP), config=run_config("gsm8k"))
    result = RUNNER.invoke(app, ["evaluate", str(run), str(other), "--vote", "2"])
    assert result.exit_code == 2
    assert "The runs mix tasks (arith, gsm8k)" in result.stderr


def test_match_needs_a_listed_run(tmp_path: Path, **_: Any) -> None:
    run = temperature_run(tmp_path)
    result = RUNNER.invoke(app, ["evaluate", str(run), "--match", str(tmp_path / "elsewhere")])
    assert result.exit_code == 2
    assert "is not one of the RUN arguments" in result.stderr


def test_vote_json_is_parseable(tmp_path: Path) -> None:
    import json

    run = temperature_run(tmp_path)
    result = RUNNER.invoke(app, ["evaluate", str(run), "--vote", "4", "--json"])
    assert result.exit_code == 0, result.output
    (votes,) = json.loads(result.stdout)["votes"]
    assert votes["n"] == 4 and votes["majority"]["tokens_per_question"] == 200.0
    assert votes["best"]["method"] == "best-of-n"
