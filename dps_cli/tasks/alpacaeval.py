"""AlpacaEval: open-ended instructions; the whole response is the answer and a judge grades it.

No local grading is possible, so `grade_many` returns ``correct=None``; the reference output
(of the dataset's baseline generator) is kept as ``Question.reference`` for the judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dps_cli.tasks.base import Grade, Question, TaskBase
from dps_cli.tasks.loading import DatasetSource, load_records, text_id, unique_questions

SOURCE = DatasetSource(
    task="alpacaeval",
    file_name="alpaca_eval.json",
    hub_path="tatsu-lab/alpaca_eval",
    hub_config="alpaca_eval",
    hub_split="eval",
)
#: Optional metadata copied into ``Question.extra`` when the source has it.
EXTRA_FIELDS = ("generator", "dataset")


class AlpacaEvalTask(TaskBase):
    """AlpacaEval (Li et al., 2023): 805 instructions judged against a reference output."""

    name = "alpacaeval"
    external_judge = "alpaca_eval"  # `dps evaluate` exports the outputs and asks it

    def load(self, data: Path | None = None) -> list[Question]:
        """Questions from ``data``, DPS_DATA_DIR/alpaca_eval.json, or tatsu-lab/alpaca_eval.

        The dataset has no id column, so the id is a hash of the instruction.
        """
        records = load_records(SOURCE, data)
        questions = []
        for i, row in enumerate(records.rows):
            instruction = records.field(i, "instruction")
            extra = {key: str(row[key]) for key in EXTRA_FIELDS if row.get(key) is not None}
            questions.append(
                Question(
                    task=self.name,
                    id=text_id(self.name, instruction),
                    text=instruction,
                    reference=records.field(i, "output", default=""),
                    extra=extra,
                )
            )
        return unique_questions(questions, records.origin)

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """The instruction as-is."""
        return question.text

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        """The whole response (stripped) is the answer; an empty one is no answer."""
        answer = completion.strip()
        return answer or None

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Ungraded here: ``correct`` is None until a judge compares against the reference."""
        return [
            Grade(answer=self.extract_answer(c, q, order), correct=None, detail="needs a judge")
            for q, c, order in items
        ]
