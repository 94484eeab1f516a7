"""Power-SMC's weighted majority vote over each sample's particles, for `dps evaluate`.

A Power-SMC sample stores every particle's completion and final log weight (schema 1.2). Its
stored ``completion`` is the one particle drawn in proportion to the weights, which the ordinary
grades judge. This module grades every particle with the run's task, groups a sample's answers
with the task's own equivalence (the one ``--vote`` uses, `dps_cli.pipeline.vote.equivalence`),
and lets the class of largest total weight answer (`dps_cli.report.voting.weighted_majority`).

Accuracy is the mean over questions of the mean over seeds, with the same bootstrap interval as
every accuracy; tokens / question and s/question are the sample's own (every particle counted).
Particle grades are recomputed on each evaluation: grading is cheap next to sampling, except
where a task runs code (HumanEval), whose grades then cost N times a plain run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dps_cli.pipeline.grading import load_run_questions
from dps_cli.pipeline.vote import answer_strings, equivalence
from dps_cli.report.metrics import bootstrap_ci
from dps_cli.report.voting import WEIGHTED_MAJORITY, VoteResult, answer_classes, weighted_majority
from dps_cli.runs.store import RunStore
from dps_cli.tasks.base import Grade

#: Seed of the accuracy's bootstrap, as for every other report figure.
BOOTSTRAP_SEED = 0
COLUMNS = ("question_id", "seed", "choice_order", "particle_completions", "particle_log_weights",
           "tokens_generated", "wall_time_s")  # fmt: skip


def particle_vote(run_dir: Path, workers: int | None = None, unsafe_sandbox: bool = False) -> VoteResult | None:
    """The weighted majority vote over particles of the SMC run at ``run_dir``; None if no row
    of the run stores particles."""
    import polars as pl

    store = RunStore.open_existing(Path(run_dir))
    rows = (
        store.scan().filter(pl.col("particle_completions").is_not_null())
        .select(COLUMNS).sort("question_id", "seed").collect().rows(named=True)
    )  # fmt: skip
    if not rows:
        return None
    task, questions = load_run_questions(store)
    items = [
        (questions[row["question_id"]], text, _order(row["choice_order"]))
        for row in rows for text in row["particle_completions"]
    ]  # fmt: skip
    grades = task.grade_many(items, workers=workers, unsafe_sandbox=unsafe_sandbox)
    if len(grades) != len(items):
        raise RuntimeError(f"task {task.name} returned {len(grades)} grades for {len(items)} particles")
    equal = equivalence(task.name)
    per_question: dict[str, list[float]] = {}
    start = 0
    for row in rows:
        count = len(row["particle_completions"])
        correct = voted_correct(task.name, grades[start:start + count], row["particle_log_weights"], equal)
        start += count
        if correct is not None:
            per_question.setdefault(row["question_id"], []).append(float(correct))
    accuracy = [float(np.mean(values)) for _, values in sorted(per_question.items())]
    interval = bootstrap_ci(np.asarray(accuracy), rng=np.random.default_rng(BOOTSTRAP_SEED)) if accuracy else None
    return VoteResult(
        method=WEIGHTED_MAJORITY, n=max(len(row["particle_completions"]) for row in rows),
        questions=len({row["question_id"] for row in rows}),
        accuracy=interval[0] if interval else None, accuracy_lo=interval[1] if interval else None,
        accuracy_hi=interval[2] if interval else None,
        tokens_per_question=float(np.mean([row["tokens_generated"] or 0 for row in rows])),
        seconds_per_question=float(np.mean([row["wall_time_s"] or 0.0 for row in rows])),
    )  # fmt: skip


def voted_correct(task: str, grades: Sequence[Grade], log_weights: Sequence[float], equal: Any) -> bool | None:
    """Whether one sample's weighted vote is right: False when no particle answered, None when
    the task cannot grade locally."""
    if any(grade.correct is None for grade in grades):
        return None
    answers = answer_strings(task, [g.answer for g in grades], [g.detail for g in grades])
    winner = weighted_majority(answer_classes(answers, equal), log_weights)
    return winner is not None and bool(grades[winner].correct)


def _order(order: Sequence[int] | None) -> tuple[int, ...] | None:
    return tuple(order) if order is not None else None
