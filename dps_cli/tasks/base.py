"""The task protocol: how a benchmark loads its questions, words its prompt and grades answers.

A task never sees a model. Sampling asks it for the user message of a question (and, for
multiple choice, the per-seed order of the choices); grading asks it to extract and check the
final answer of a completion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Question:
    """One benchmark item.

    Attributes:
        task: registry name of the task (``math500``, ``gpqa``, ...).
        id: stable identifier, unique within the task (survives reordering of the data file).
        text: the problem statement / instruction, without any prompt template.
        reference: the reference answer as a string (math answer, correct choice text, integer,
            or for HumanEval the canonical solution).
        choices: multiple-choice options in their original order; ``choices[0]`` is correct.
        extra: task-specific string fields (HumanEval ``prompt``/``test``/``entry_point``,
            AlpacaEval ``dataset``/``generator``).
    """

    task: str
    id: str
    text: str
    reference: str
    choices: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Grade:
    """The verdict on one completion: the extracted answer and whether it is correct.

    ``correct`` is None when the task cannot grade locally (AlpacaEval needs a judge).
    """

    answer: str | None
    correct: bool | None
    detail: str = ""


class Task(Protocol):
    """What every registered benchmark provides."""

    name: str
    #: True when completions should continue the raw prompt (no chat template), e.g. HumanEval
    #: on a base model; the prompt builder consults it together with the tokenizer.
    prefers_raw_prompt: bool
    #: The external judge whose verdict `dps evaluate` adds (``"alpaca_eval"``), or None: the
    #: pipeline looks the name up in its table of judges (`dps_cli.pipeline.evaluate`).
    external_judge: str | None

    def load(self, data: Path | None = None) -> list[Question]:
        """Load all questions, from ``data`` if given, else DPS_DATA_DIR, else the hub."""
        ...

    def choice_order(self, question: Question, seed: int) -> tuple[int, ...] | None:
        """The deterministic shuffle of ``question.choices`` for this seed (None: no choices)."""
        ...

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """The text of the user turn for this question (choices laid out in ``choice_order``)."""
        ...

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        """The final answer stated in ``completion``, or None if it states none."""
        ...

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Grade (question, completion, choice_order) triples.

        ``workers`` bounds the processes of a task that grades in parallel (None: its default);
        ``unsafe_sandbox`` lets a task that runs generated code do so without the OS sandbox.
        Tasks without parallelism or code execution ignore both.
        """
        ...


class TaskBase:
    """The defaults most tasks share: chat prompts, no choices to shuffle, no external judge."""

    name: str
    prefers_raw_prompt: bool = False
    external_judge: str | None = None

    def choice_order(self, question: Question, seed: int) -> tuple[int, ...] | None:
        """No choices to shuffle."""
        return None


def grade_extracted(
    task: Task,
    items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
    equal: Callable[[str, str], bool],
) -> list[Grade]:
    """Grade by comparing each extracted answer with the reference; no answer is wrong.

    Tasks whose verdict is "the final answer equals the reference" (math500, arith) share this
    loop and differ only in ``equal``.
    """
    grades = []
    for question, completion, order in items:
        answer = task.extract_answer(completion, question, order)
        if answer is None:
            grades.append(Grade(answer=None, correct=False, detail="no answer"))
        else:
            grades.append(Grade(answer=answer, correct=equal(answer, question.reference)))
    return grades
