"""Grading and evaluating fixture runs: exact accuracies, reuse of grades, comparisons."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dps_cli.errors import UserError
from dps_cli.pipeline.evaluate import evaluate_runs, grade_run, summarize_run
from dps_cli.pipeline.grading import ensure_grades
from dps_cli.report.metrics import bootstrap_ci
from dps_cli.runs.store import RunStore
from dps_cli.tasks.base import Grade
from tests.factories import (
    BoxedIntegerTask,
    boxed_rows,
    run_config,
    sample_row,
    use_fake_task,
    write_run,
)

# Question -> correctness per seed: accuracies 1/4, 3/4, 0, 1 -> run accuracy 0.5.
BASELINE = {
    "arith-0001": [True, False, False, False],
    "arith-0002": [True, True, True, False],
    "arith-0003": [False, False, False, False],
    "arith-0004": [True, True, True, True],
}
BETTER = {qid: [True, True, True, True] for qid in BASELINE}


@pytest.fixture
def fake_task(monkeypatch: pytest.MonkeyPatch) -> BoxedIntegerTask:
    task: BoxedIntegerTask = use_fake_task(monkeypatch)
    return task


def test_grade_run_writes_exact_grades(tmp_path: Path, fake_task: BoxedIntegerTask) -> None:
    run = write_run(tmp_path / "run", boxed_rows(BASELINE), rows_per_part=5)
    grades = grade_run(run)
    assert grades.columns == ["run_id", "question_id", "seed", "answer", "correct", "grade_detail"]
    assert grades.height == 16
    assert grades.filter(grades["question_id"] == "arith-0001")["correct"].to_list() == [
        True,
        False,
        False,
        False,
    ]
    assert grades["answer"][0] == "1"
    assert RunStore(run).read_grades().equals(grades)  # type: ignore[union-attr]


def test_regrading_is_idempotent_and_leaves_samples_untouched(
    tmp_path: Path, fake_task: BoxedIntegerTask
) -> None:
    run = write_run(tmp_path / "run", boxed_rows(BASELINE), rows_per_part=3)
    parts = {p: p.read_bytes() for p in (run / "samples").iterdir()}
    grade_run(run)
    first = (run / "grades.parquet").read_bytes()
    grade_run(run, workers=2)
    assert (run / "grades.parquet").read_bytes() == first
    assert {p: p.read_bytes() for p in (run / "samples").iterdir()} == parts


def test_grades_are_reused_until_samples_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_task: BoxedIntegerTask
) -> None:
    run = write_run(tmp_path / "run", boxed_rows(BASELINE))
    ensure_grades(run)
    calls: list[int] = []
    original = fake_task.grade_many

    def counting(items: Any, **options: Any) -> list[Grade]:
        calls.append(len(items))
        return original(items, **options)

    monkeypatch.setattr(fake_task, "grade_many", counting)
    assert ensure_grades(run).height == 16
    assert calls == []
    RunStore(run).write_part(
        [sample_row(question_id="arith-0005", seed=0, completion=r"\boxed{5}")]
    )
    assert ensure_grades(run).height == 17
    assert calls == [17]
    ensure_grades(run, regrade=True)
    assert calls == [17, 17]


def test_sample_of_unknown_question_is_a_user_error(
    tmp_path: Path, fake_task: BoxedIntegerTask
) -> None:
    run = write_run(tmp_path / "run", [sample_row(question_id="arith-9999")])
    with pytest.raises(UserError) as err:
        grade_run(run)
    assert err.value.message == (
        f"Run {run} has samples for questions missing from the task's default data: arith-9999."
    )


def test_summary_numbers_are_exact(tmp_path: Path, fake_task: BoxedIntegerTask) -> None:
    rows = boxed_rows(BASELINE)
    for i, row in enumerate(rows):
        row.update(wall_time_s=float(i), tokens_generated=100 + i, final_k=8 if i % 2 else 4)
        row.update(proposals_attempted=10, proposals_accepted=i % 3)
    run = write_run(tmp_path / "k8", rows)
    summary = summarize_run(run)
    expected_ci = bootstrap_ci(np.array([0.25, 0.75, 0.0, 1.0]), rng=np.random.default_rng(0))
    assert (summary.accuracy, summary.accuracy_lo, summary.accuracy_hi) == expected_ci
    assert summary.accuracy == 0.5
    assert summary.questions == 4 and summary.samples == 16 and summary.graded_samples == 16
    assert summary.seconds_per_question == pytest.approx(7.5)
    assert summary.tokens_per_question == pytest.approx(107.5)
    assert summary.mean_final_k == pytest.approx(6.0)
    assert summary.acceptance_rate == pytest.approx(15 / 160)
    assert summary.method_label == "power α=4 k=8"
    assert summary.label == "k8" and summary.task == "arith" and summary.model == "tiny-test-model"


@pytest.mark.parametrize(
    ("overrides", "label", "acceptance"),
    [
        (
            {"method": "dps", "controller": "gbdt", "tau": 0.5, "k_initial": 2},
            "dps gbdt τ=0.5",
            0.25,
        ),
        ({"method": "temperature", "temperature": 0.3, "alpha": None}, "temperature T=0.3", None),
        ({"method": "greedy", "proposals_attempted": 0, "proposals_accepted": 0}, "greedy", None),
    ],
)
def test_method_labels_and_acceptance(
    tmp_path: Path,
    fake_task: BoxedIntegerTask,
    overrides: dict[str, Any],
    label: str,
    acceptance: float | None,
) -> None:
    run = write_run(tmp_path / "run", boxed_rows(BASELINE, **overrides))
    summary = summarize_run(run)
    assert summary.method_label == label
    assert summary.acceptance_rate == acceptance


@pytest.mark.parametrize(
    ("bounds", "overrides", "expected"),
    [
        ([0.0, 0.0], {}, 0.0),  # hf, or a top-K covering the vocabulary: "exact"
        ([0.0031, 0.0007], {}, 0.0031),  # the largest chain's bound, without float32 noise digits
        ([0.0031, None], {}, None),  # a chain stored before schema 1.1: a maximum would understate
        ([0.0031, 0.0007], {"method": "temperature", "proposals_attempted": 0}, None),  # no MH ratio
    ],
)
def test_the_reported_log_q_bound(
    tmp_path: Path, fake_task: BoxedIntegerTask, bounds: list[float | None], overrides: dict[str, Any],
    expected: float | None,
) -> None:
    rows = [{**row, "logq_bound": bounds[row["seed"] % 2]} for row in boxed_rows(BASELINE, **overrides)]
    assert summarize_run(write_run(tmp_path / "run", rows)).logq_bound == expected


def test_evaluate_compares_each_run_with_the_first(
    tmp_path: Path, fake_task: BoxedIntegerTask
) -> None:
    base = write_run(tmp_path / "k8", boxed_rows(BASELINE, wall_time_s=4.0))
    dps_rows = boxed_rows(BETTER, wall_time_s=1.0, method="dps", controller="gbdt", tau=0.5)
    dps = write_run(tmp_path / "dps", dps_rows)
    other = write_run(
        tmp_path / "other", [sample_row(question_id="arith-0007", completion=r"\boxed{7}")]
    )
    report = evaluate_runs([base, dps, other])
    assert [run.label for run in report.runs] == ["k8", "dps", "other"]
    assert len(report.comparisons) == 1  # "other" shares no question with the baseline
    comparison = report.comparisons[0]
    assert (comparison.baseline, comparison.run) == ("k8", "dps")
    assert comparison.shared_questions == 4
    assert comparison.delta == pytest.approx(0.5)
    assert 0 < comparison.delta_lo <= comparison.delta <= comparison.delta_hi <= 1.0
    assert comparison.time_ratio == pytest.approx(0.25)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["comparisons"][0]["delta"] == pytest.approx(0.5)
    assert data["runs"][1]["method_label"] == "dps gbdt τ=0.5"


def test_evaluate_is_reproducible(tmp_path: Path, fake_task: BoxedIntegerTask) -> None:
    base = write_run(tmp_path / "a", boxed_rows(BASELINE))
    dps = write_run(tmp_path / "b", boxed_rows(BETTER))
    assert (
        evaluate_runs([base, dps]).to_dict() == evaluate_runs([base, dps], regrade=True).to_dict()
    )


class JudgeOnlyTask(BoxedIntegerTask):
    """AlpacaEval stand-in: no local grade."""

    name = "alpacaeval"
    external_judge = "alpaca_eval"

    def grade_many(self, items: Any, workers: int | None = None, unsafe_sandbox: bool = False) -> list[Grade]:
        return [Grade(answer=c, correct=None, detail="needs a judge") for _, c, _ in items]


def _alpaca_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake_task(monkeypatch, JudgeOnlyTask(count=3))
    rows = [
        sample_row(
            task="alpacaeval", question_id=f"arith-{q:04d}", seed=s, completion=f"out {q}/{s}"
        )
        for q in range(2)
        for s in (1, 0)
    ]
    return write_run(tmp_path / "alpaca", rows, config=run_config(task="alpacaeval"))


def test_alpacaeval_run_exports_outputs_and_prints_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _alpaca_run(tmp_path, monkeypatch)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_CLIENT_CONFIG_PATH", raising=False)
    summary = evaluate_runs([run]).runs[0]
    assert summary.accuracy is None and summary.graded_samples == 0
    outputs = run / "alpaca_eval_outputs.json"
    assert json.loads(outputs.read_text()) == [
        {
            "instruction": "What is 0 + 0?",
            "output": "out 0/0",
            "generator": "alpaca",
            "dataset": "alpaca_eval",
        },
        {
            "instruction": "What is 1 + 0?",
            "output": "out 1/0",
            "generator": "alpaca",
            "dataset": "alpaca_eval",
        },
    ]
    assert summary.alpaca is not None
    assert summary.alpaca.command == (
        f"alpaca_eval --model_outputs {outputs} --output_path {run / 'alpaca_eval'}"
    )
    assert summary.alpaca.command in summary.alpaca.note
    assert summary.alpaca.win_rate is None


def test_alpacaeval_judge_results_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _alpaca_run(tmp_path, monkeypatch)
    monkeypatch.setattr("dps_cli.pipeline.alpaca.judge_executable", lambda: "/bin/alpaca_eval")
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        out_dir = Path(argv[argv.index("--output_path") + 1])
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "leaderboard.csv").write_text(
            ",win_rate,standard_error,length_controlled_winrate\n"
            "gpt4,50.0,0.0,50.0\nalpaca,12.5,1.0,20.25\n"
        )
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr("dps_cli.pipeline.alpaca.subprocess.run", fake_run)
    summary = evaluate_runs([run]).runs[0]
    assert summary.alpaca is not None
    assert (summary.alpaca.win_rate, summary.alpaca.lc_win_rate) == (12.5, 20.25)
    assert calls[0][:3] == [
        "/bin/alpaca_eval",
        "--model_outputs",
        str(run / "alpaca_eval_outputs.json"),
    ]
    evaluate_runs([run])  # unchanged outputs: the judge's verdict is reused, not paid for twice
    assert len(calls) == 1


def test_unreadable_grades_file_is_regraded(tmp_path: Path, fake_task: BoxedIntegerTask) -> None:
    run = write_run(tmp_path / "run", boxed_rows(BASELINE))
    (run / "grades.parquet").write_bytes(b"truncated")
    assert ensure_grades(run).height == 16
    assert RunStore(run).read_grades() is not None


def test_real_arith_task_grades_its_own_references(tmp_path: Path) -> None:
    pytest.importorskip("dps_cli.tasks.grading.integer")
    from dps_cli.tasks import get_task

    questions = get_task("arith").load(None)[:3]
    rows = [
        sample_row(
            question_id=q.id,
            seed=seed,
            completion=f"\\boxed{{{q.reference}}}" if seed else "no idea",
        )
        for q in questions
        for seed in range(2)
    ]
    run = write_run(tmp_path / "arith", rows)
    summary = evaluate_runs([run]).runs[0]
    assert summary.accuracy == 0.5
    assert summary.questions == 3
