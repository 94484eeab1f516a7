"""`collect`: labels from hand-made fixed-k runs, and the runs it must refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dps_cli.controllers.table import TABLE_SCHEMA, read_table
from dps_cli.errors import UserError
from dps_cli.pipeline.collect import collect
from tests.controllers.fixed_k_runs import Q0, Q1, ladder_runs, make_run


def test_labels_compare_each_k_with_k8(tmp_path: Path) -> None:
    summary = collect(ladder_runs(tmp_path), tmp_path / "table.parquet")
    # Q2 has no k=8 sample: its 2 rows go; Q1 at k=4 stopped before any checkpoint: 1 row.
    assert (summary.rows, summary.questions, summary.positives, summary.dropped_rows) == (
        15,
        2,
        13,
        2,
    )
    table = read_table(summary.path)
    assert table.columns == TABLE_SCHEMA.names
    labels = (
        table.group_by("question_id", "k")
        .agg(pl.col("enough").all(), pl.col("correct").first(), pl.col("correct_k8").first())
        .sort("question_id", "k")
    )
    assert labels.rows() == [
        (Q0, 2, False, False, True),  # wrong at 2, right at 8: 2 was not enough
        (Q0, 4, True, True, True),
        (Q0, 6, True, True, True),
        (Q0, 8, True, True, True),
        (Q1, 2, True, False, False),  # wrong at 2 and at 8: raising k would not have helped
        (Q1, 4, True, True, False),
        (Q1, 6, True, False, False),
        (Q1, 8, True, False, False),
    ]
    first = table.filter((pl.col("question_id") == Q0) & (pl.col("k") == 6)).row(1, named=True)
    assert first["checkpoint_block"] == 2 and first["hidden"] == [6.0, 2.0]
    assert first["question_time_sec"] == 12.0 and first["current_k"] == 6
    assert first["question_embedding"] == [0.5, -0.5] and first["wall_time_s"] == 60.0
    assert (first["model"], first["alpha"], first["hidden_layer"], first["run_id"]) == (
        "tiny-test-model", 4.0, 1, "k6",
    )  # fmt: skip
    stopped = table.filter((pl.col("question_id") == Q1) & (pl.col("k") == 4))
    assert stopped.height == 1 and stopped["checkpoint_block"].to_list() == [None]
    assert (tmp_path / "k2" / "grades.parquet").is_file()  # graded on the way


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "tiny-b", "Runs differ in model: tiny-test-model (k2) vs tiny-b (k8)."),
        ("alpha", 2.0, "Runs differ in alpha: 4.0 (k2) vs 2.0 (k8)."),
        ("task", "math500", "Runs differ in task: arith (k2) vs math500 (k8)."),
    ],
)
def test_runs_of_different_settings_are_refused(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    runs = [make_run(tmp_path, 2, {Q0: True}), make_run(tmp_path, 8, {Q0: True}, **{field: value})]
    with pytest.raises(UserError) as err:
        collect(runs, tmp_path / "t.parquet")
    assert err.value.message == message
    assert not (tmp_path / "t.parquet").exists()


def test_non_power_runs_are_refused(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path, 8, {Q0: True}),
        make_run(tmp_path, 2, {Q0: True}, "t", method="temperature"),
    ]
    with pytest.raises(UserError) as err:
        collect(runs, tmp_path / "t.parquet")
    assert err.value.message == (
        "Run t was sampled with method 'temperature'; dps collect takes fixed-k power runs."
    )


def test_k_outside_the_ladder_and_missing_k8_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match="Run k10 used k=10; dps collect takes fixed-k runs with k in 2, 4, 6, 8"
    ):
        collect([make_run(tmp_path, 10, {Q0: True})], tmp_path / "t.parquet")
    with pytest.raises(UserError, match="None of the runs has k=8"):
        collect(
            [make_run(tmp_path, 2, {Q0: True}), make_run(tmp_path, 4, {Q0: True})],
            tmp_path / "t.parquet",
        )


def test_the_same_pair_twice_at_one_k_is_refused(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path, 2, {Q0: True}, "a"),
        make_run(tmp_path, 2, {Q0: False, Q1: True}, "b"),
        make_run(tmp_path, 8, {Q0: True, Q1: True}),
    ]
    with pytest.raises(UserError, match=f"Runs a and b both hold question {Q0} seed 0 at k=2"):
        collect(runs, tmp_path / "t.parquet")


def test_missing_run_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="manifest.json is missing"):
        collect([tmp_path / "nope"], tmp_path / "t.parquet")
