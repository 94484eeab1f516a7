"""MATH-500: competition math problems graded by symbolic equivalence of the boxed answer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dps_cli.tasks.base import Grade, Question, TaskBase, grade_extracted
from dps_cli.tasks.loading import DatasetSource, load_records, text_id, unique_questions

SOURCE = DatasetSource(
    task="math500",
    file_name="math500.json",
    hub_path="HuggingFaceH4/MATH-500",
    hub_split="test",
)
PROMPT = (
    "Can you solve the following math problem? {question} "
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)
#: Optional metadata copied into ``Question.extra`` when the source has it.
EXTRA_FIELDS = ("subject", "level", "source")


class Math500Task(TaskBase):
    """The 500-problem MATH subset of Lightman et al. (2023)."""

    name = "math500"

    def load(self, data: Path | None = None) -> list[Question]:
        """Questions from ``data``, DPS_DATA_DIR/math500.json, or HuggingFaceH4/MATH-500.

        Accepts the Hub's field names (problem/answer/unique_id) and the local file's
        (prompt/answer/id); a record without an id gets one hashed from its text.
        """
        records = load_records(SOURCE, data)
        questions = []
        for i, row in enumerate(records.rows):
            text = records.field(i, "problem", "prompt")
            extra = {key: str(row[key]) for key in EXTRA_FIELDS if row.get(key) is not None}
            questions.append(
                Question(
                    task=self.name,
                    id=records.field(i, "unique_id", "id", default=text_id(self.name, text)),
                    text=text,
                    reference=records.field(i, "answer"),
                    extra=extra,
                )
            )
        return unique_questions(questions, records.origin)

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """The prompt wording used by the power-sampling paper."""
        return PROMPT.format(question=question.text)

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        r"""The content of the last ``\boxed{}`` (or the grader's fallback), if any."""
        from dps_cli.tasks.grading.math import extract_math_answer

        return extract_math_answer(completion)

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Correct when the extracted answer is mathematically equal to the reference."""
        from dps_cli.tasks.grading.math import math_equal

        return grade_extracted(self, items, math_equal)
