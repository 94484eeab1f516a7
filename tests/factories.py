"""Synthetic run data for tests: complete sample rows and whole run directories.

Any test that needs a run store (evaluate, passk, collect, controllers) can build one here
without a model: ``write_run(tmp_path / "run", [sample_row(question_id="arith-0001", seed=3)])``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dps_cli.runs.schema import SAMPLE_SCHEMA
from dps_cli.runs.store import RunStore
from dps_cli.tasks.base import Grade, Question, TaskBase

DEFAULT_RUN_ID = "test-run"


def sample_row(**overrides: Any) -> dict[str, Any]:
    """One sample row with every SAMPLE_SCHEMA column; ``overrides`` replace the defaults."""
    row: dict[str, Any] = {
        "run_id": DEFAULT_RUN_ID,
        "task": "arith",
        "question_id": "arith-0000",
        "seed": 0,
        "shard": "0/1",
        "model": "tiny-test-model",
        "prompt": "What is 1 + 1?",
        "prompt_tokens": 12,
        "reference": "2",
        "choice_order": None,
        "completion": "The answer is 2.",
        "completion_ids": [1, 2, 3, 4],
        "answer": "2",
        "method": "power",
        "alpha": 4.0,
        "temperature": 0.25,
        "max_new_tokens": 64,
        "blocks": 4,
        "k_initial": 8,
        "controller": None,
        "tau": None,
        "k_schedule": [8, 8, 8, 8],
        "final_k": 8,
        "proposals_attempted": 32,
        "proposals_accepted": 8,
        "tokens_generated": 400,
        "tokens_kept": 4,
        "stopped_at_eos": True,
        "logq_bound": 0.0,
        "wall_time_s": 1.5,
        "hidden_layer": None,
        "checkpoints": [],
        "question_embedding": None,
        "particle_completions": None,
        "particle_log_weights": None,
        "resamples": None,
        "log_z": None,
    }
    unknown = set(overrides) - set(SAMPLE_SCHEMA.names)
    if unknown:
        raise KeyError(f"not SAMPLE_SCHEMA columns: {sorted(unknown)}")
    row.update(overrides)
    return row


def run_config(task: str = "arith", **overrides: Any) -> dict[str, Any]:
    """A manifest "config" for a fixed-k power run; ``overrides`` replace the defaults."""
    config: dict[str, Any] = {
        "task": task,
        "data": None,
        "model": "tiny-test-model",
        "method": "power",
        "alpha": 4.0,
        "k": 8,
        "temperature": 0.25,
        "max_new_tokens": 64,
        "blocks": 4,
        "checkpoints": [],
        "hidden_layer": None,
        "controller": None,
        "tau": None,
        "seed": 0,
    }
    config.update(overrides)
    return config


def manifest_for(config: Mapping[str, Any], run_id: str = DEFAULT_RUN_ID) -> dict[str, Any]:
    """A complete manifest around ``config``, shaped like the one `dps sample` writes."""
    return {
        "schema_version": "1.0",
        "run_id": run_id,
        "created_at": "2025-01-01T00:00:00+00:00",
        "command": "dps sample --bench arith",
        "config": dict(config),
        "model": {"id": config.get("model", "tiny-test-model"), "source": "test"},
        "versions": {"dps": "0.1.0"},
        "git_sha": None,
    }


def write_run(
    root: Path,
    rows: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
    task: str = "arith",
    rows_per_part: int | None = None,
) -> Path:
    """Write a manifest and ``rows`` (in parts of ``rows_per_part``, default one part) to root."""
    store = RunStore(root)
    run_id = str(rows[0]["run_id"]) if rows else DEFAULT_RUN_ID
    store.ensure_manifest(manifest_for(config or run_config(task), run_id=run_id))
    size = rows_per_part or max(len(rows), 1)
    for start in range(0, len(rows), size):
        store.write_part(rows[start : start + size])
    return root


class BoxedIntegerTask(TaskBase):
    """A stand-in task: questions ``arith-0000``.. with reference ``str(i)``, graded on \\boxed{N}.

    Lets pipeline tests grade without depending on a real task's data or grader.
    """

    name = "arith"

    def __init__(self, count: int = 10) -> None:
        self.count = count

    def load(self, data: Path | None = None) -> list[Question]:
        """``count`` questions; ``data`` is ignored."""
        return [
            Question(
                task=self.name, id=f"arith-{i:04d}", text=f"What is {i} + 0?", reference=str(i)
            )
            for i in range(self.count)
        ]

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """The question text."""
        return question.text

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        """The last ``\\boxed{N}`` integer."""
        found = re.findall(r"\\boxed\{(-?\d+)\}", completion)
        return found[-1] if found else None

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Exact match of the boxed integer with the reference."""
        grades = []
        for question, completion, order in items:
            answer = self.extract_answer(completion, question, order)
            correct = answer is not None and answer == question.reference
            grades.append(
                Grade(answer=answer, correct=correct, detail="" if answer else "no answer")
            )
        return grades


def use_fake_task(monkeypatch: Any, task: Any = None) -> Any:
    """Make run grading resolve every task name to ``task`` (default: `BoxedIntegerTask`)."""
    fake = task if task is not None else BoxedIntegerTask()
    monkeypatch.setattr("dps_cli.pipeline.grading.resolve_task", lambda name: fake)
    return fake


def boxed_rows(correct: Mapping[str, Sequence[bool]], **overrides: Any) -> list[dict[str, Any]]:
    """Rows for question ids -> per-seed correctness (for `BoxedIntegerTask` grading)."""
    rows = []
    for qid, flags in correct.items():
        reference = int(qid.rsplit("-", 1)[1])
        for seed, ok in enumerate(flags):
            answer = reference if ok else reference + 1000
            rows.append(
                sample_row(
                    question_id=qid,
                    seed=seed,
                    reference=str(reference),
                    completion=f"So the answer is \\boxed{{{answer}}}.",
                    answer=str(answer),
                    **overrides,
                )
            )
    return rows
