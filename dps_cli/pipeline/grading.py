"""Grading a run: join its samples to the task's questions and write grades.parquet.

Samples are never rewritten; grades live in their own file, stamped with a fingerprint of the
samples they judged, so `dps evaluate` can reuse them until new samples arrive. Grading the same
samples twice writes byte-identical files (rows sorted by question id and seed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_cli.errors import UserError
from dps_cli.runs.atomic import STORAGE_ERRNOS
from dps_cli.runs.store import RunStore
from dps_cli.tasks.base import Question, Task

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

GRADING_COLUMNS = ("run_id", "question_id", "seed", "completion", "choice_order")
#: How many missing question ids an error message lists before "and N more".
_SHOWN_IDS = 5


def resolve_task(name: str) -> Task:
    """The task registered as ``name`` (a seam tests replace with a fake task)."""
    from dps_cli.tasks import get_task

    return get_task(name)


def run_task_name(store: RunStore, config: Mapping[str, Any]) -> str:
    """The run's task, from the manifest config (``UserError`` if the manifest lacks it)."""
    name = config.get("task")
    if not isinstance(name, str) or not name:
        raise UserError(
            f"Manifest {store.manifest_path} names no task (config.task is missing).",
            "Restore the manifest that `dps sample` wrote.",
        )
    return name


def load_run_questions(store: RunStore) -> tuple[Task, dict[str, Question]]:
    """The run's task and its questions by id, loaded from the data the run was sampled on."""
    config = store.read_manifest().get("config", {})
    task = resolve_task(run_task_name(store, config))
    data = config.get("data")
    questions = task.load(Path(data) if data else None)
    return task, {question.id: question for question in questions}


def read_samples_for_grading(store: RunStore) -> pl.DataFrame:
    """The columns grading needs, sorted by (question_id, seed) for reproducible output."""
    return store.scan().select(GRADING_COLUMNS).sort("question_id", "seed").collect()


def samples_fingerprint(store: RunStore, samples: pl.DataFrame) -> str:
    """SHA-256 of the run's task/data and every graded sample: grades stay valid while it holds."""
    config = store.read_manifest().get("config", {})
    digest = hashlib.sha256()
    digest.update(json.dumps([config.get("task"), config.get("data")]).encode())
    for row in samples.select(GRADING_COLUMNS).iter_rows():
        digest.update(json.dumps(row, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def grade_run(
    run_dir: Path, workers: int | None = None, unsafe_sandbox: bool = False
) -> pl.DataFrame:
    """Grade every sample of the run at ``run_dir``, write grades.parquet and return it.

    Columns: run_id, question_id, seed, answer (null: none found), correct (null: the task
    needs an external judge), grade_detail. ``workers`` bounds the grading processes of
    tasks that grade in parallel (HumanEval); the others ignore it.
    ``unsafe_sandbox`` lets tasks that run generated code (HumanEval) grade without the
    operating system's sandbox where it cannot start.
    """
    store = RunStore.open_existing(Path(run_dir))
    return _grade_store(store, read_samples_for_grading(store), workers, unsafe_sandbox)


def ensure_grades(
    run_dir: Path, regrade: bool = False, workers: int | None = None, unsafe_sandbox: bool = False
) -> pl.DataFrame:
    """The run's grades: the stored ones if they judged exactly the current samples, else fresh."""
    store = RunStore.open_existing(Path(run_dir))
    samples = read_samples_for_grading(store)
    if not regrade and store.grades_fingerprint() == samples_fingerprint(store, samples):
        stored = store.read_grades()
        if stored is not None:
            logger.info("Reusing grades in %s", store.grades_path)
            return stored
    return _grade_store(store, samples, workers, unsafe_sandbox)


def _grade_store(
    store: RunStore, samples: pl.DataFrame, workers: int | None, unsafe_sandbox: bool = False
) -> pl.DataFrame:
    """Grade ``samples`` of ``store`` with its task and write the grades file."""
    import polars as pl

    task, questions = load_run_questions(store)
    _check_questions_known(store, samples, questions)
    items = [
        (questions[qid], completion, tuple(order) if order is not None else None)
        for qid, completion, order in samples.select(
            "question_id", "completion", "choice_order"
        ).iter_rows()
    ]
    logger.info("Grading %d samples of %s with task %s", len(items), store.root, task.name)
    grades = list(task.grade_many(items, workers=workers, unsafe_sandbox=unsafe_sandbox))
    if len(grades) != len(items):
        raise RuntimeError(f"task {task.name} returned {len(grades)} grades for {len(items)} items")
    frame = pl.DataFrame(
        {
            "run_id": samples["run_id"],
            "question_id": samples["question_id"],
            "seed": samples["seed"],
            "answer": pl.Series([g.answer for g in grades], dtype=pl.String),
            "correct": pl.Series([g.correct for g in grades], dtype=pl.Boolean),
            "grade_detail": pl.Series([g.detail for g in grades], dtype=pl.String),
        }
    )
    try:
        store.write_grades(frame, samples_fingerprint(store, samples))
    except OSError as err:  # grades are a cache: a read-only run is still graded and reported
        if err.errno not in STORAGE_ERRNOS:
            raise
        logger.warning("Grades of %s are not stored (%s); they are recomputed on every call",
                       store.root, err.strerror)  # fmt: skip
    return frame


def _check_questions_known(
    store: RunStore, samples: pl.DataFrame, questions: Mapping[str, Question]
) -> None:
    """Every sample's question must be in the task data, or grading would be guesswork."""
    missing = sorted(set(samples["question_id"].to_list()) - set(questions))
    if not missing:
        return
    shown = ", ".join(missing[:_SHOWN_IDS])
    more = f" and {len(missing) - _SHOWN_IDS} more" if len(missing) > _SHOWN_IDS else ""
    data = store.read_manifest().get("config", {}).get("data") or "the task's default data"
    raise UserError(
        f"Run {store.root} has samples for questions missing from {data}: {shown}{more}.",
        "Grade with the same data the run was sampled from (config.data in manifest.json).",
    )
