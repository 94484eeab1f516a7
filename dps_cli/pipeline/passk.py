"""`dps passk`: pass@k curves of runs with the unbiased estimator, k = 1 .. seeds per question.

For each k, pass@k is averaged over the questions that have at least k graded samples. A
question with fewer samples cannot give an unbiased pass@k at that k, so it is left out of that
k's average — and the report counts and names it, rather than dropping it silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dps_cli.errors import UserError
from dps_cli.pipeline.evaluate import check_distinct_runs, method_label, run_labels
from dps_cli.pipeline.grading import ensure_grades
from dps_cli.report.metrics import pass_at_k
from dps_cli.report.results import PasskPoint, PasskReport, RunPassk
from dps_cli.runs.store import RunStore


def passk_table(
    run_dirs: Sequence[Path], regrade: bool = False, workers: int | None = None
) -> PasskReport:
    """pass@k for k = 1 .. n of every run (n = the most graded samples any question has)."""
    check_distinct_runs(run_dirs)
    labels = run_labels(run_dirs)
    return PasskReport(
        runs=[
            run_passk(Path(run_dir), label, regrade=regrade, workers=workers)
            for run_dir, label in zip(run_dirs, labels, strict=True)
        ]
    )


def run_passk(
    run_dir: Path, label: str, regrade: bool = False, workers: int | None = None
) -> RunPassk:
    """One run's curve from its (possibly freshly computed) grades."""
    import polars as pl

    store = RunStore.open_existing(run_dir)
    grades = ensure_grades(run_dir, regrade=regrade, workers=workers)
    counts = (
        grades.filter(pl.col("correct").is_not_null())
        .group_by("question_id")
        .agg(pl.len().alias("n"), pl.col("correct").sum().alias("c"))
        .sort("question_id")
    )
    if counts.height == 0:
        raise UserError(
            f"Run {store.root} has no locally graded samples, so pass@k is undefined.",
            "pass@k needs a task with a local grader (AlpacaEval needs a judge).",
        )
    per_question = [(str(q), int(n), int(c)) for q, n, c in counts.iter_rows()]
    first = store.scan().select("method", "alpha", "temperature", "k_initial", "controller", "tau")
    return RunPassk(
        run=str(store.root),
        label=label,
        method_label=method_label(first.head(1).collect().row(0, named=True)),
        questions=len(per_question),
        max_samples=max(n for _, n, _ in per_question),
        points=passk_points(per_question),
    )


def passk_points(per_question: Sequence[tuple[str, int, int]]) -> list[PasskPoint]:
    """pass@k for k = 1 .. max n from (question_id, n samples, c correct) triples."""
    max_n = max((n for _, n, _ in per_question), default=0)
    points = []
    for k in range(1, max_n + 1):
        eligible = [pass_at_k(n, c, k) for _, n, c in per_question if n >= k]
        excluded = [qid for qid, n, _ in per_question if n < k]
        points.append(
            PasskPoint(
                k=k, value=sum(eligible) / len(eligible), questions=len(eligible), excluded=excluded
            )
        )
    return points
