"""The reproduce table: tokens / question, the compute-matched voting rows, chance marks (golden).

Regenerate the golden file after a deliberate format change with
``DPS_UPDATE_GOLDEN=1 python -m pytest tests/reproduce/test_table.py``.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pytest
from rich.console import Console

from dps_cli.controllers.card import ControllerCard, HeldOutMetrics, TauSweep
from dps_cli.pipeline.evaluate import evaluate_runs
from dps_cli.reproduce.report import _row, matched_rows
from dps_cli.reproduce.table import ReproduceReport, render_markdown, results_table
from tests.factories import sample_row, use_fake_task, write_run
from tests.report.test_voting import ANSWERS, fake_scores, temperature_run

GOLDEN = Path(__file__).parent / "golden"


def card(name: str, lo: float, hi: float) -> ControllerCard:
    metrics = HeldOutMetrics(
        roc_auc=0.27, brier=0.31, log_loss=0.9, rows=54, questions=3, positives=40, roc_auc_lo=lo,
        roc_auc_hi=hi, brier_lo=0.2, brier_hi=0.45, train_roc_auc=0.93,
    )  # fmt: skip
    sweep = TauSweep(points=(), recommended_tau=None, baseline_accuracy={},
                     baseline_relative_time={}, pairs=0)  # fmt: skip
    return ControllerCard(
        name=name, kind="gbdt", feature_names=("mcmc_entropy",), hidden_layer=None,
        hidden_size=None, question_embedding_size=None, model_id="tiny-test-model", task="arith",
        alpha=4.0, training_data_sha256="0" * 64, training_runs=("k2",), metrics=metrics,
        tau_sweep=sweep, seed=0, created_at="2026-01-01T00:00:00+00:00", package_version="0.1.0",
        model_file="model.cbm",
    )  # fmt: skip


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ReproduceReport:
    use_fake_task(monkeypatch)
    monkeypatch.setattr("dps_cli.pipeline.scoring.score_completions", fake_scores)
    power = write_run(tmp_path / "test-k8", [
        sample_row(question_id=q, seed=0, reference=q[-1], completion=f"\\boxed{{{q[-1]}}}",
                   tokens_generated=140, wall_time_s=4.0)
        for q in ANSWERS
    ])  # fmt: skip
    dps = write_run(tmp_path / "test-dps-gbdt", [
        sample_row(question_id=q, seed=0, reference=q[-1], completion="\\boxed{0}", method="dps",
                   controller="arith-gbdt", tau=0.5, tokens_generated=90, final_k=4)
        for q in ANSWERS
    ])  # fmt: skip
    # Power-SMC: the drawn particle ("\boxed{0}") is wrong; the vote of the two light right
    # particles against one heavier wrong one (e^0 + e^0 > e^0.5) is right.
    smc = write_run(tmp_path / "test-smc", [
        sample_row(question_id=q, seed=0, reference=q[-1], completion="\\boxed{0}", method="smc",
                   tokens_generated=135, wall_time_s=2.0, k_schedule=[], final_k=None, k_initial=None,
                   particle_completions=[f"\\boxed{{{q[-1]}}}", f"\\boxed{{{q[-1]}}}", "\\boxed{0}"],
                   particle_log_weights=[0.0, 0.0, 0.5], resamples=1, log_z=-3.0)
        for q in ANSWERS
    ])  # fmt: skip
    temperature = temperature_run(tmp_path, "test-temperature")
    evaluation = evaluate_runs([power, dps, smc, temperature], match=power, curves=True)
    chance, better = card("arith-gbdt", 0.0, 0.62), card("arith-mlp-h", 0.7, 0.9)
    methods = ("Fixed k=8", "DPS-GBDT", "Power-SMC N=3", "Temperature 1/alpha = 0.25")
    cards = {"DPS-GBDT": chance}
    rows = [_row(m, s, cards.get(m)) for m, s in zip(methods, evaluation.runs, strict=True)]
    rows += matched_rows(evaluation, "Fixed k=8")
    return ReproduceReport(
        model="tiny-test-model", task="arith", profile="cpu", scale_note="A toy scale.",
        train_questions=16, test_questions=3, seeds=(0, 1), settings={"alpha": "4"},
        stage_seconds={"report": 1.0}, rows=rows, cards=[chance, better], passk_png="passk.png",
        tau_png="tau_sweep.png", tokens_png="accuracy_tokens.png",
    )  # fmt: skip


def test_reproduce_table_matches_golden(report: ReproduceReport) -> None:
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(results_table(report.rows, title="DPS reproduction"))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    path = GOLDEN / "reproduce.txt"
    if os.environ.get("DPS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_reproduce_rows_say_what_was_matched_and_marked(report: ReproduceReport) -> None:
    by_method = {row.method: row for row in report.rows}
    majority = by_method["Majority vote @ matched tokens"]
    best = by_method["Best-of-N @ matched tokens"]
    assert majority.tokens_per_question == best.tokens_per_question == 150.0  # N = 3 x 50
    assert majority.accuracy == pytest.approx(2 / 3) and best.accuracy == pytest.approx(1 / 3)
    assert "N = 3 samples of test-temperature" in majority.note and "140.0" in majority.note
    assert by_method["DPS-GBDT"].mark == "†" and by_method["Fixed k=8"].mark == ""
    assert "no better than chance at this scale" in by_method["DPS-GBDT"].note
    assert by_method["Fixed k=8"].tokens_per_question == 140.0
    smc = by_method["Power-SMC N=3"]
    assert smc.accuracy == 0.0 and smc.tokens_per_question == 135.0 and smc.mean_k is None
    assert smc.note == ("Power-SMC N=3: the accuracy is that of the particle drawn in proportion to the final "
                        "weights; the weighted majority vote over all 3 particles scores 100.0%, at the same tokens.")


def test_reproduce_markdown_has_the_evidence_and_the_plot(report: ReproduceReport) -> None:
    text = render_markdown(report)
    assert "| tokens / question |" in text and "| DPS-GBDT † |" in text
    assert "![accuracy against tokens](accuracy_tokens.png)" in text
    assert "| arith-gbdt | 3 | 54 | 0.270 [0.000, 0.620] | 0.310 [0.200, 0.450] | 0.930 | chance |" in text
    assert "arith-gbdt: held-out ROC-AUC 0.270 [0.000, 0.620] over 3 held-out questions contains 0.5, " \
        "so this controller is no better than chance at this scale." in text  # fmt: skip
    assert "arith-mlp-h: held-out ROC-AUC 0.270 [0.700, 0.900]" in text and "beats chance" in text
    assert not math.isnan(report.cards[0].metrics.train_roc_auc)


def test_reproduce_json_has_every_row(report: ReproduceReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    rows = {row["method"]: row for row in data["rows"]}
    assert list(rows) == [row.method for row in report.rows]
    assert rows["Power-SMC N=3"]["tokens_per_question"] == 135.0 and rows["Power-SMC N=3"]["paper"] is None
    assert rows["Fixed k=8"]["paper"] == [69.7, 263.2] and data["profile"] == "cpu"
