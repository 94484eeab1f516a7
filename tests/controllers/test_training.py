"""Each controller kind learns a planted signal it can see, and only that; splits and seeds."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from dps_cli.controllers.features import CheckpointFeatures
from dps_cli.controllers.table import checkpoint_features
from dps_cli.controllers.training import (
    TrainSettings,
    fit_and_evaluate,
    held_out_metrics,
    split_by_question,
)
from dps_cli.errors import UserError
from tests.controllers.planted import planted_table

FAST = TrainSettings(mlp_epochs=40, patience=5, gbdt_iterations=150)


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return {signal: planted_table(signal) for signal in ("entropy", "entropy+hidden", "question")}


@pytest.mark.parametrize(
    ("signal", "kind", "low", "high"),
    [
        ("entropy", "gbdt", 0.9, 1.0),
        ("entropy+hidden", "mlp-h", 0.9, 1.0),
        ("entropy+hidden", "mlp-hq", 0.9, 1.0),
        ("question", "mlp-hq", 0.9, 1.0),
        ("question", "gbdt", 0.0, 0.65),
        ("question", "mlp-h", 0.0, 0.65),
    ],
)
def test_kind_learns_only_the_signal_it_sees(
    tables: dict[str, pl.DataFrame], signal: str, kind: str, low: float, high: float
) -> None:
    result = fit_and_evaluate(kind, tables[signal], FAST)
    assert low < result.metrics.roc_auc < high
    assert result.metrics.questions == 60  # 20% of 300 questions held out
    assert result.metrics.rows == 60 * 2 * 3 * 3  # k=8 rows are always "enough": left out
    assert len(result.sweep.points) == 9 and result.sweep.pairs == 120


def test_split_is_by_question_and_seeded() -> None:
    ids = [f"q{i}" for i in range(100) for _ in range(5)]
    split = split_by_question(ids, TrainSettings(seed=3))
    assert not (split.train & split.test or split.train & split.val or split.val & split.test)
    assert split.train | split.val | split.test == set(ids)
    assert (len(split.test), len(split.val), len(split.train)) == (20, 16, 64)
    assert split == split_by_question(ids, TrainSettings(seed=3))
    assert split.test != split_by_question(ids, TrainSettings(seed=4)).test


def test_split_refuses_too_few_questions() -> None:
    with pytest.raises(UserError, match="holds 2 question"):
        split_by_question(["a", "b", "a"], TrainSettings())


@pytest.mark.parametrize("kind", ["gbdt", "mlp-hq"])
def test_same_seed_gives_identical_predictions(kind: str) -> None:
    table = planted_table("entropy+hidden", questions=40)
    batch = checkpoint_features(table.head(50))
    first = fit_and_evaluate(kind, table, FAST).model.predict_p_enough(batch)
    second = fit_and_evaluate(kind, table, FAST).model.predict_p_enough(batch)
    assert first.shape == (50,)
    np.testing.assert_array_equal(first, second)


def test_hidden_kinds_refuse_a_table_without_hidden_states() -> None:
    table = planted_table("entropy", questions=10).with_columns(
        pl.lit(None, dtype=pl.List(pl.Float32)).alias("hidden")
    )
    with pytest.raises(UserError, match="'mlp-h' needs hidden vectors, but 240 of the table's 240"):
        fit_and_evaluate("mlp-h", table, FAST)


def test_single_class_labels_give_a_constant_controller(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dps_cli.controllers.artifacts import load_controller
    from dps_cli.controllers.constant import ConstantModel
    from dps_cli.pipeline.train import train_controller

    table = planted_table("entropy", questions=10).with_columns(enough=pl.lit(True))
    result = fit_and_evaluate("gbdt", table, FAST)
    assert isinstance(result.model, ConstantModel) and result.model.p_enough == 1.0
    path = tmp_path / "table.parquet"
    table.write_parquet(path)
    train_controller("mlp-h", path, name="const", registry_dir=tmp_path / "reg", settings=FAST)
    loaded = load_controller("const", tmp_path / "reg")
    batch = [CheckpointFeatures(scalars={}, hidden=None, question_embedding=None)] * 3
    np.testing.assert_array_equal(loaded.predict_p_enough(batch), [1.0, 1.0, 1.0])


def test_metrics_with_one_class_have_nan_auc_and_a_note() -> None:
    metrics = held_out_metrics(np.array([1, 1, 1]), np.array([0.9, 0.8, 0.5]), questions=1)
    assert math.isnan(metrics.roc_auc) and "ROC-AUC undefined" in metrics.note
    assert metrics.brier == pytest.approx((0.01 + 0.04 + 0.25) / 3)
    assert metrics.positives == 3


def test_unknown_kind_suggests_the_closest() -> None:
    with pytest.raises(UserError, match="Unknown controller kind 'mlp-g'") as err:
        fit_and_evaluate("mlp-g", planted_table("entropy", questions=5), FAST)
    assert "Did you mean 'mlp-h'?" in str(err.value)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(UserError, match="test_fraction=1.5 must lie strictly between 0 and 1"):
        TrainSettings(test_fraction=1.5)
