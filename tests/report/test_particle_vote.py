"""Power-SMC in `dps evaluate`: the drawn particle's accuracy and the weighted vote over particles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.pipeline.evaluate import evaluate_runs
from dps_cli.pipeline.particle_vote import particle_vote
from dps_cli.report.tables import voting_table
from dps_cli.report.voting import WEIGHTED_MAJORITY
from tests.factories import BoxedIntegerTask, run_config, sample_row, use_fake_task, write_run

LOG3 = math.log(3.0)


def smc_row(qid: str, seed: int, drawn: int, answers: list[int | None], log_weights: list[float]):  # type: ignore[no-untyped-def]
    """An SMC row whose particles box ``answers`` (None: no answer) and whose completion is
    particle ``drawn``'s."""
    texts = [f"So \\boxed{{{a}}}." if a is not None else "I do not know." for a in answers]
    return sample_row(question_id=qid, seed=seed, method="smc", completion=texts[drawn], k_initial=None,
                      k_schedule=[], final_k=None, blocks=None, proposals_attempted=0, proposals_accepted=0,
                      tokens_generated=100 * len(answers), particle_completions=texts,
                      particle_log_weights=log_weights, resamples=1, log_z=-2.5)


# Question i has reference i (BoxedIntegerTask). Per sample: drawn particle right?, vote right?
ROWS = [
    # two wrong light particles against one right particle of weight 3: the vote is right
    smc_row("arith-0001", 0, drawn=0, answers=[7, 7, 1], log_weights=[0.0, 0.0, LOG3]),
    # an unanswered particle does not vote; 2 wins 2 to 1 with equal weights: the vote is right
    smc_row("arith-0002", 0, drawn=0, answers=[None, 2, 2, 5], log_weights=[0.0] * 4),
    # the same question at seed 1: 9 outweighs 2 (e^1 + e^1 > e^0 + e^0): the vote is wrong
    smc_row("arith-0002", 1, drawn=2, answers=[2, 2, 9, 9], log_weights=[0.0, 0.0, 1.0, 1.0]),
    # nobody answers: wrong both ways
    smc_row("arith-0003", 0, drawn=0, answers=[None, None], log_weights=[0.0, 0.0]),
]


@pytest.fixture
def smc_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake_task(monkeypatch, BoxedIntegerTask())
    config = run_config(method="smc", k=None, blocks=None, particles=4, smc_chunk=16, smc_ess=0.5, smc_bridge=0)
    return write_run(tmp_path / "smc", ROWS, config=config)


def test_the_vote_weighs_particles_with_the_tasks_grader(smc_run: Path) -> None:
    vote = particle_vote(smc_run)
    assert vote is not None and vote.method == WEIGHTED_MAJORITY
    # per question: 1, mean(1, 0) = 0.5, 0 -> 0.5; the drawn particles: 0, mean(0, 0), 0 -> 0
    assert vote.accuracy == pytest.approx(0.5)
    assert (vote.n, vote.questions) == (4, 3)
    assert vote.tokens_per_question == pytest.approx((300 + 400 + 400 + 200) / 4)


def test_evaluate_reports_the_drawn_particle_and_the_vote(smc_run: Path) -> None:
    report = evaluate_runs([smc_run])
    run = report.runs[0]
    assert run.method_label == "smc α=4 N=3"  # the first row's particles
    assert run.accuracy == 0.0 and run.acceptance_rate is None and run.logq_bound == 0.0  # weights sum log q
    assert run.tokens_per_question == pytest.approx(325.0)
    assert run.particle_vote is not None and run.particle_vote.accuracy == pytest.approx(0.5)
    table = voting_table(report)
    assert table is not None and table.row_count == 1
    assert list(table.columns[1].cells) == ["weighted maj over 4 particles"]
    assert json.loads(json.dumps(report.to_dict()))["runs"][0]["particle_vote"]["accuracy"] == 0.5


def test_evaluate_cli_shows_the_vote(smc_run: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(smc_run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "weighted maj over 4 particles" in result.stdout and "50.0%" in result.stdout


def test_runs_of_other_methods_have_no_particle_vote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_task(monkeypatch, BoxedIntegerTask())
    run = write_run(tmp_path / "power", [sample_row(question_id="arith-0002", completion="\\boxed{2}")])
    assert particle_vote(run) is None
    assert evaluate_runs([run]).runs[0].particle_vote is None
