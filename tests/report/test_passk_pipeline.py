"""pass@k over fixture runs: exact values, questions with fewer samples reported, the plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from dps_cli.errors import UserError
from dps_cli.pipeline.passk import passk_points, passk_table
from dps_cli.report.plots import plot_passk
from dps_cli.report.tables import passk_notes
from tests.factories import (
    BoxedIntegerTask,
    boxed_rows,
    run_config,
    sample_row,
    use_fake_task,
    write_run,
)

# Two questions x 4 seeds: c = 1 and c = 3.
TWO_QUESTIONS = {
    "arith-0001": [False, True, False, False],
    "arith-0002": [True, True, False, True],
}


@pytest.fixture(autouse=True)
def fake_task(monkeypatch: pytest.MonkeyPatch) -> BoxedIntegerTask:
    task: BoxedIntegerTask = use_fake_task(monkeypatch)
    return task


def test_passk_values_are_exact(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", boxed_rows(TWO_QUESTIONS), rows_per_part=3)
    report = passk_table([run])
    (curve,) = report.runs
    assert curve.max_samples == 4 and curve.questions == 2
    # q1 (c=1): 1/4, 1/2, 3/4, 1; q2 (c=3): 3/4, 1, 1, 1.
    assert [p.value for p in curve.points] == pytest.approx([0.5, 0.75, 0.875, 1.0])
    assert [p.questions for p in curve.points] == [2, 2, 2, 2]
    assert all(p.excluded == [] for p in curve.points)
    assert passk_notes(report) == []


def test_questions_with_fewer_samples_are_reported_not_dropped(tmp_path: Path) -> None:
    few = {**TWO_QUESTIONS, "arith-0003": [True, False]}
    run = write_run(tmp_path / "run", boxed_rows(few))
    (curve,) = passk_table([run]).runs
    assert [p.questions for p in curve.points] == [3, 3, 2, 2]
    assert [p.excluded for p in curve.points] == [[], [], ["arith-0003"], ["arith-0003"]]
    # k=1: (1/4 + 3/4 + 1/2)/3; k=2: (1/2 + 1 + 1)/3; k=3, k=4 only the two full questions.
    assert [p.value for p in curve.points] == pytest.approx([0.5, 2.5 / 3, 0.875, 1.0])
    notes = passk_notes(passk_table([run]))
    assert notes[0] == (
        "run: pass@3 leaves out 1 of 3 questions with fewer than 3 samples: arith-0003."
    )
    assert len(notes) == 2


def test_passk_points_from_counts() -> None:
    points = passk_points([("a", 2, 0), ("b", 2, 2)])
    assert [(p.k, p.value, p.questions) for p in points] == [(1, 0.5, 2), (2, 0.5, 2)]


def test_ungradable_run_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Ungraded(BoxedIntegerTask):
        def grade_many(self, items, workers=None, unsafe_sandbox=False):  # type: ignore[no-untyped-def]
            from dps_cli.tasks.base import Grade

            return [Grade(answer=None, correct=None, detail="needs a judge") for _ in items]

    use_fake_task(monkeypatch, Ungraded())
    run = write_run(tmp_path / "alp", [sample_row()], config=run_config(task="alpacaeval"))
    with pytest.raises(UserError, match="has no locally graded samples"):
        passk_table([run])


def test_plot_is_written_as_png(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", boxed_rows(TWO_QUESTIONS))
    b = write_run(tmp_path / "b", boxed_rows({"arith-0001": [True, True]}, method="temperature"))
    target = tmp_path / "plots" / "passk.png"
    assert plot_passk(passk_table([a, b]), target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["passk.png"]
