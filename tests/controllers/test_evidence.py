"""Whether a controller beats chance: grouped bootstrap intervals, the verdict, and how it is shown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.controllers.artifacts import read_card
from dps_cli.controllers.card import HeldOutMetrics, chance_sentence
from dps_cli.controllers.evidence import grouped_intervals, weighted_auc
from dps_cli.controllers.fitting import TrainSettings
from dps_cli.pipeline.train import train_controller
from tests.controllers.planted import write_planted

FAST = TrainSettings(gbdt_iterations=60, patience=3)
RUNNER = CliRunner()
WIDE = {"COLUMNS": "200"}
NO_BETTER = "no better than chance at this scale"


def metrics(lo: float, hi: float) -> HeldOutMetrics:
    return HeldOutMetrics(roc_auc=0.6, brier=0.2, log_loss=0.6, rows=30, questions=6, positives=20,
                          roc_auc_lo=lo, roc_auc_hi=hi)  # fmt: skip


def test_weighted_auc_is_sklearns_auc_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.4 * labels, 1)  # many ties
    assert weighted_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    weights = rng.integers(0, 3, 300)
    repeated = np.repeat(np.arange(300), weights)
    assert weighted_auc(labels, scores, weights) == pytest.approx(
        roc_auc_score(labels[repeated], scores[repeated])
    )
    assert math.isnan(weighted_auc(np.ones(4), np.arange(4)))


def test_interval_resamples_questions_not_rows() -> None:
    rng = np.random.default_rng(1)
    labels = np.tile([0, 1], 300)
    groups = np.repeat(np.arange(6), 100)
    effect = np.array([0.8, -0.4, 0.5, 0.0, 0.6, -0.2])  # each question its own signal strength
    scores = rng.random(600) + effect[groups] * labels
    few = grouped_intervals(labels, scores, groups, np.random.default_rng(0))
    many = grouped_intervals(labels, scores, np.arange(600), np.random.default_rng(0))
    # rows of 6 heterogeneous questions give a much wider AUC interval than 600 independent rows
    assert few[1] - few[0] > 2 * (many[1] - many[0])
    assert all(math.isnan(v) for v in grouped_intervals(labels, scores, np.zeros(600), np.random.default_rng(0)))


@pytest.mark.parametrize(
    ("lo", "hi", "verdict"),
    [(0.3, 0.7, "chance"), (0.55, 0.9, "better"), (0.1, 0.45, "worse"), (math.nan, math.nan, "unknown")],
)
def test_verdict(lo: float, hi: float, verdict: str) -> None:
    m = metrics(lo, hi)
    assert m.verdict == verdict and m.beats_chance == (verdict == "better")
    sentence = chance_sentence("c", m)
    if verdict in ("chance", "worse"):
        assert NO_BETTER in sentence
    elif verdict == "better":
        assert "beats chance" in sentence
    else:
        assert "no evidence that this controller is better than chance" in sentence


def test_interval_containing_half_is_reported_as_no_better_than_chance(tmp_path: Path) -> None:
    # gbdt cannot see the question embedding that decides the labels: its AUC is chance-level
    table = write_planted(tmp_path / "t.parquet", "question", questions=30)
    report = train_controller("gbdt", table, "blind", registry_dir=tmp_path / "reg", settings=FAST)
    m = report.card.metrics
    assert m.roc_auc_lo < 0.5 < m.roc_auc_hi and m.verdict == "chance"
    assert not math.isnan(m.train_roc_auc) and m.brier_lo <= m.brier <= m.brier_hi
    shown = RUNNER.invoke(app, ["controllers", "show", "blind", "--registry", str(tmp_path / "reg")], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert "train AUC" in shown.stdout
    assert f"contains 0.5, so this controller is {NO_BETTER}." in shown.stdout.replace("\n", " ")


def test_a_planted_signal_beats_chance(tmp_path: Path) -> None:
    table = write_planted(tmp_path / "t.parquet", "entropy", questions=40)
    card = train_controller("gbdt", table, "sees", registry_dir=tmp_path / "reg", settings=FAST).card
    assert card.metrics.verdict == "better" and card.metrics.roc_auc_lo > 0.5


def test_old_cards_without_intervals_read_and_show_n_a(tmp_path: Path) -> None:
    table = write_planted(tmp_path / "t.parquet", "entropy", questions=20)
    registry = tmp_path / "reg"
    train_controller("gbdt", table, "old", registry_dir=registry, settings=FAST)
    path = registry / "old" / "card.json"
    data = json.loads(path.read_text())
    for key in ("roc_auc_lo", "roc_auc_hi", "brier_lo", "brier_hi", "train_roc_auc"):
        del data["metrics"][key]
    data["card_schema_version"] = "1.0"
    path.write_text(json.dumps(data))
    card = read_card(registry / "old")
    assert card.metrics.verdict == "unknown" and math.isnan(card.metrics.roc_auc_lo)
    shown = RUNNER.invoke(app, ["controllers", "show", "old", "--registry", str(registry)], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert "n/a" in shown.stdout and "no evidence" in shown.stdout
