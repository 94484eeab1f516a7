"""`dps evaluate`: grade runs, summarise each one, and compare every run with the first.

Definitions used in every report:

* accuracy — mean over questions of the question's mean correctness over its graded seeds,
  with a 95% percentile-bootstrap interval that resamples questions (fixed seed: reproducible);
* s/question — mean over samples of ``wall_time_s``: the seconds one question costs for one
  sample, comparable across runs with different numbers of seeds;
* tokens/question — mean over samples of ``tokens_generated`` (rejected proposals included): one
  sample answers a question, so a power chain counts all its proposals; voting baselines
  (``--vote``, ``--match``; `dps_cli.report.voting`) count all N samples they use;
* Power-SMC (``smc``) — accuracy is the drawn particle's; ``particle_vote`` is the weighted
  majority vote over every sample's particles (`dps_cli.pipeline.particle_vote`); tokens/question
  counts every particle;
* acceptance — total accepted / total attempted MH proposals (only for power and dps);
* log q bound — the largest ``logq_bound`` of any chain: how far the MH log acceptance ratios
  (or Power-SMC's log weights) may be off where a backend normalizes q over the top-K
  log-probabilities only (``vllm``); "exact" when it is 0 (the ``hf`` backend, or a top-K
  covering the vocabulary); only for power, dps and smc, and n/a when some chain has none
  (stored before schema 1.1);
* a comparison — over the questions both runs answered: Δaccuracy (run - baseline) with a paired
  bootstrap interval, and the time ratio run / baseline of s/question.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps_cli.errors import UserError
from dps_cli.pipeline.alpaca import alpaca_verdict
from dps_cli.pipeline.grading import ensure_grades, grade_run, resolve_task
from dps_cli.pipeline.vote import voting_section
from dps_cli.report.metrics import bootstrap_ci, paired_difference
from dps_cli.report.results import AlpacaResult, Comparison, EvaluationReport, RunSummary
from dps_cli.runs.store import RunStore
from dps_cli.tasks import TASKS

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

#: The external judges a task may name (`Task.external_judge`): run dir, label, rejudge, offline
#: judge model and its device -> the verdict `RunSummary.alpaca` carries.
EXTERNAL_JUDGES: dict[str, Callable[[Path, str, bool, str | None, str], AlpacaResult]] = {
    "alpaca_eval": alpaca_verdict,
}
#: Seed of every bootstrap in reports, so the same runs always print the same intervals.
BOOTSTRAP_SEED = 0
MH_METHODS = ("power", "dps")
SUMMARY_COLUMNS = (
    "question_id", "seed", "model", "method", "alpha", "temperature", "k_initial", "controller",
    "tau", "final_k", "proposals_attempted", "proposals_accepted", "tokens_generated",
    "wall_time_s", "logq_bound", "particle_log_weights",
)  # fmt: skip

__all__ = [
    "Comparison",
    "EvaluationReport",
    "RunSummary",
    "evaluate_runs",
    "grade_run",
    "summarize_run",
]


def evaluate_runs(
    run_dirs: Sequence[Path], regrade: bool = False, workers: int | None = None,
    judge: str | None = None, judge_device: str = "auto", vote: int | None = None,
    match: Path | None = None, curves: bool = False, device: str = "auto",
    unsafe_sandbox: bool = False,
) -> EvaluationReport:
    """Grade (reusing valid grades unless ``regrade``), summarise and compare ``run_dirs``.

    ``judge`` (a model spec) also scores AlpacaEval runs offline with `dps_cli.pipeline.judge`.
    ``vote``, ``match`` and ``curves`` add the voting baselines (`dps_cli.pipeline.vote`), whose
    log p scoring loads the runs' model on ``device``. ``unsafe_sandbox`` grades HumanEval
    without the operating system's sandbox where it cannot start (`dps_cli.tasks.grading.sandbox`).
    """
    check_distinct_runs(run_dirs)
    tasks = [str(RunStore.open_existing(run).read_manifest().get("config", {}).get("task", "")) for run in run_dirs]
    if judge is not None and not any(external_judge(task) for task in tasks):
        raise UserError(
            f"--judge {judge} judges AlpacaEval runs, and no run given is one (tasks: "
            f"{', '.join(sorted(set(tasks)))}).",
            "Leave out --judge, or add an AlpacaEval run.",
        )
    labels = run_labels(run_dirs)
    summaries: list[RunSummary] = []
    frames: list[pl.DataFrame] = []
    all_grades: list[pl.DataFrame] = []
    for run_dir, label in zip(run_dirs, labels, strict=True):
        grades = ensure_grades(
            run_dir, regrade=regrade, workers=workers, unsafe_sandbox=unsafe_sandbox
        )
        all_grades.append(grades)
        summary = summarize_run(run_dir, grades=grades, label=label)
        if summary.method == "smc":
            from dps_cli.pipeline.particle_vote import particle_vote

            summary = replace(summary, particle_vote=particle_vote(run_dir, workers, unsafe_sandbox))
        external = external_judge(summary.task)
        if external is not None:  # e.g. AlpacaEval: no local grade, a judge's verdict instead
            verdict = EXTERNAL_JUDGES[external](run_dir, label, regrade, judge, judge_device)
            summary = replace(summary, alpaca=verdict)
        summaries.append(summary)
        frames.append(question_frame(RunStore.open_existing(run_dir), grades))
    comparisons = [
        comparison
        for summary, frame in zip(summaries[1:], frames[1:], strict=True)
        if (comparison := compare_runs(summaries[0].label, frames[0], summary.label, frame))
    ]
    voting = voting_section(run_dirs, summaries, all_grades, vote, match, curves, device)
    return EvaluationReport(runs=summaries, comparisons=comparisons, voting=voting)


def external_judge(task: str) -> str | None:
    """The external judge ``task`` names (`Task.external_judge`); None for a task this version
    does not register (a run whose grades are stored can still be evaluated)."""
    return resolve_task(task).external_judge if task in TASKS else None


def summarize_run(
    run_dir: Path, grades: pl.DataFrame | None = None, label: str | None = None
) -> RunSummary:
    """The headline numbers of one run; grades it first when ``grades`` is not given."""
    store = RunStore.open_existing(Path(run_dir))
    manifest = store.read_manifest()
    config = manifest.get("config", {})
    if grades is None:
        grades = ensure_grades(store.root)
    samples = store.scan().select(SUMMARY_COLUMNS).collect()
    first = samples.row(0, named=True)
    accuracy = _accuracy_interval(grades)
    attempted = int(samples["proposals_attempted"].drop_nulls().sum())
    accepted = int(samples["proposals_accepted"].drop_nulls().sum())
    is_mh = first["method"] in MH_METHODS and attempted > 0
    return RunSummary(
        run=str(store.root),
        label=label or store.root.name,
        run_id=str(manifest.get("run_id", "")),
        task=str(config.get("task", "")),
        model=str(manifest.get("model", {}).get("id") or first["model"] or ""),
        method=str(first["method"]),
        method_label=method_label(first),
        questions=samples["question_id"].n_unique(),
        samples=samples.height,
        graded_samples=grades["correct"].drop_nulls().len(),
        accuracy=accuracy[0] if accuracy else None,
        accuracy_lo=accuracy[1] if accuracy else None,
        accuracy_hi=accuracy[2] if accuracy else None,
        seconds_per_question=_mean(samples["wall_time_s"]),
        mean_final_k=_mean(samples["final_k"]),
        tokens_per_question=_mean(samples["tokens_generated"]),
        acceptance_rate=float(accepted / attempted) if is_mh else None,
        logq_bound=_logq_bound(samples["logq_bound"]) if is_mh or first["method"] == "smc" else None,
    )


def method_label(row: dict[str, Any]) -> str:
    """The method and its parameters, e.g. "power α=4 k=8", "dps gbdt τ=0.5", "smc α=4 N=8"."""
    method = str(row.get("method"))
    if method == "power":
        return f"power α={_num(row.get('alpha'))} k={row.get('k_initial')}"
    if method == "dps":
        return f"dps {row.get('controller')} τ={_num(row.get('tau'))}"
    if method == "smc":
        return f"smc α={_num(row.get('alpha'))} N={len(row.get('particle_log_weights') or ())}"
    if method == "temperature":
        return f"temperature T={_num(row.get('temperature'))}"
    return method


def check_distinct_runs(run_dirs: Sequence[Path]) -> None:
    """Refuse a run given twice (``R R``, ``R ./R``): it would be compared with itself."""
    seen: dict[Path, Path] = {}
    for run_dir in run_dirs:
        key = Path(run_dir).resolve()
        if key in seen:
            same = "" if str(seen[key]) == str(run_dir) else f" (as {seen[key]} and {run_dir})"
            raise UserError(f"Run {run_dir} is given twice{same}.", "Pass each run once.")
        seen[key] = Path(run_dir)


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Short names for runs: directory names, or full paths where names collide."""
    names = [Path(run_dir).name for run_dir in run_dirs]
    return [
        name if names.count(name) == 1 else str(run_dir)
        for name, run_dir in zip(names, run_dirs, strict=True)
    ]


def question_frame(store: RunStore, grades: pl.DataFrame) -> pl.DataFrame:
    """Per question: mean correctness over graded seeds and mean wall time per sample."""
    import polars as pl

    times = (
        store.scan()
        .group_by("question_id")
        .agg(pl.col("wall_time_s").mean().alias("seconds"))
        .collect()
    )
    correct = (
        grades.filter(pl.col("correct").is_not_null())
        .group_by("question_id")
        .agg(pl.col("correct").cast(pl.Float64).mean().alias("accuracy"))
    )
    return times.join(correct, on="question_id", how="left").sort("question_id")


def compare_runs(
    baseline_label: str, baseline: pl.DataFrame, run_label: str, run: pl.DataFrame
) -> Comparison | None:
    """Paired comparison on shared graded questions; None if the runs share none."""
    import polars as pl

    shared = baseline.join(run, on="question_id", how="inner", suffix="_run").filter(
        pl.col("accuracy").is_not_null() & pl.col("accuracy_run").is_not_null()
    )
    if shared.height == 0:
        logger.info("Runs %s and %s share no graded questions", baseline_label, run_label)
        return None
    base_acc = shared["accuracy"].to_numpy()
    run_acc = shared["accuracy_run"].to_numpy()
    delta = paired_difference(base_acc, run_acc, rng=np.random.default_rng(BOOTSTRAP_SEED))
    base_time = _mean(shared["seconds"])
    run_time = _mean(shared["seconds_run"])
    ratio = run_time / base_time if base_time and run_time is not None else None
    return Comparison(
        baseline=baseline_label,
        run=run_label,
        shared_questions=shared.height,
        baseline_accuracy=float(base_acc.mean()),
        run_accuracy=float(run_acc.mean()),
        delta=delta[0],
        delta_lo=delta[1],
        delta_hi=delta[2],
        time_ratio=ratio,
    )


def _accuracy_interval(grades: pl.DataFrame) -> tuple[float, float, float] | None:
    """Accuracy with its bootstrap interval over questions; None if nothing is gradable."""
    import polars as pl

    per_question = (
        grades.filter(pl.col("correct").is_not_null())
        .group_by("question_id")
        .agg(pl.col("correct").cast(pl.Float64).mean())
        .sort("question_id")
    )
    if per_question.height == 0:
        return None
    values = per_question["correct"].to_numpy()
    return bootstrap_ci(values, rng=np.random.default_rng(BOOTSTRAP_SEED))


def _logq_bound(series: pl.Series) -> float | None:
    """The largest chain bound; None unless every chain recorded one (a run resumed across the
    schema 1.1 upgrade has chains without), since a partial maximum could understate it."""
    if series.len() == 0 or series.null_count():
        return None
    return float(f"{float(series.max()):.6g}")  # type: ignore[arg-type]  # float32: no noise digits


def _mean(series: pl.Series) -> float | None:
    """Mean of the non-null values, None if there are none."""
    values = series.drop_nulls()
    if values.len() == 0:
        return None
    return float(values.mean())  # type: ignore[arg-type]


def _num(value: Any) -> str:
    """A float parameter without noise: 4.0 -> "4", float32 0.3 -> "0.3"."""
    return "?" if value is None else f"{float(value):g}"
