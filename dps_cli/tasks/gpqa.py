"""GPQA Diamond: graduate-level multiple choice, shown in a per-seed shuffled order.

``Question.choices[0]`` is always the correct answer. The order shown to the model comes from
`choice_order`, a permutation derived by hashing (question id, seed): the same on every machine,
different across seeds, and stored with each sample so grading maps the letter back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from dps_cli.tasks.base import Grade, Question, TaskBase
from dps_cli.tasks.loading import (
    DatasetSource,
    check_choice_order,
    load_records,
    text_id,
    unique_questions,
)

SOURCE = DatasetSource(
    task="gpqa",
    file_name="gpqa_diamond.jsonl",
    hub_path="Idavidrein/gpqa",
    hub_config="gpqa_diamond",
    hub_split="train",
    gated=True,
)
LETTERS = "ABCD"
CHOICE_FIELDS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
INSTRUCTION = (
    "Please reason step by step, and put the letter of your final answer "
    "(A, B, C or D) within \\boxed{}."
)
#: Optional metadata copied into ``Question.extra`` when the source has it.
EXTRA_FIELDS = {"High-level domain": "domain", "Subdomain": "subdomain"}


def shuffled_order(question_id: str, seed: int, n: int) -> tuple[int, ...]:
    """A permutation of ``range(n)`` fixed by (question id, seed).

    Sorting indices by a SHA-256 key is a uniform shuffle that, unlike a seeded RNG, cannot
    change with a library version; Python's ``hash()`` is salted per process and unusable.
    """

    def key(index: int) -> bytes:
        return hashlib.sha256(f"{question_id}\x00{seed}\x00{index}".encode()).digest()

    return tuple(sorted(range(n), key=key))


class GpqaTask(TaskBase):
    """GPQA Diamond (Rein et al., 2023): 198 four-way multiple-choice science questions."""

    name = "gpqa"

    def load(self, data: Path | None = None) -> list[Question]:
        """Questions from ``data``, DPS_DATA_DIR/gpqa_diamond.jsonl, or the gated Hub dataset.

        The dataset has no usable id column, so the id is a hash of the question text.
        """
        records = load_records(SOURCE, data)
        questions = []
        for i, row in enumerate(records.rows):
            text = records.field(i, "Question").strip()
            choices = tuple(records.field(i, name).strip() for name in CHOICE_FIELDS)
            extra = {new: str(row[old]) for old, new in EXTRA_FIELDS.items() if row.get(old)}
            questions.append(
                Question(
                    task=self.name,
                    id=text_id(self.name, text),
                    text=text,
                    reference=choices[0],
                    choices=choices,
                    extra=extra,
                )
            )
        return unique_questions(questions, records.origin)

    def choice_order(self, question: Question, seed: int) -> tuple[int, ...] | None:
        """Shown position -> original choice index, for this question and seed."""
        return shuffled_order(question.id, seed, len(question.choices))

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """Question, the choices as ``A) ...`` lines in shown order, then the instruction."""
        order = check_choice_order(choice_order, question)
        lines = [f"{LETTERS[pos]}) {question.choices[index]}" for pos, index in enumerate(order)]
        return f"{question.text}\n\n" + "\n".join(lines) + f"\n\n{INSTRUCTION}"

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        """The letter the completion commits to (as shown to the model), if any."""
        from dps_cli.tasks.grading.choice import extract_choice_letter

        return extract_choice_letter(completion, letters=LETTERS[: len(question.choices)])

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Correct iff the chosen letter's shown position maps back to original index 0."""
        grades = []
        for question, completion, choice_order in items:
            order = check_choice_order(choice_order, question)
            letter = self.extract_answer(completion, question, order)
            if letter is None:
                grades.append(Grade(answer=None, correct=False, detail="no answer"))
                continue
            chosen = order[LETTERS.index(letter)]
            grades.append(Grade(answer=letter, correct=chosen == 0, detail=f"choice {chosen}"))
        return grades
