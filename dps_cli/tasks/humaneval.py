"""HumanEval: complete a Python function; graded by running the unit tests in a sandbox process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dps_cli.tasks.base import Grade, Question, TaskBase
from dps_cli.tasks.loading import DatasetSource, load_records, unique_questions

SOURCE = DatasetSource(
    task="humaneval",
    file_name="humaneval.jsonl",
    hub_path="openai_humaneval",
    hub_split="test",
)
PROMPT = (
    "Complete the following Python function. Return the whole function in a ```python code "
    "block.\n\n```python\n{prompt}```"
)
#: Seconds each program may run its tests before it counts as failed.
TEST_TIMEOUT_S = 10.0


class HumanEvalTask(TaskBase):
    """OpenAI HumanEval (Chen et al., 2021): 164 function-completion problems."""

    name = "humaneval"
    #: A base model without a chat template continues the function signature and docstring.
    prefers_raw_prompt = True

    def load(self, data: Path | None = None) -> list[Question]:
        """Questions from ``data``, DPS_DATA_DIR/humaneval.jsonl, or openai_humaneval."""
        records = load_records(SOURCE, data)
        questions = []
        for i in range(len(records.rows)):
            prompt = records.field(i, "prompt")
            questions.append(
                Question(
                    task=self.name,
                    id=records.field(i, "task_id"),
                    text=prompt,
                    reference=records.field(i, "canonical_solution", default=""),
                    extra={
                        "prompt": prompt,
                        "test": records.field(i, "test"),
                        "entry_point": records.field(i, "entry_point"),
                    },
                )
            )
        return unique_questions(questions, records.origin)

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """The chat wording: the function prompt in a code block, asking for the whole function."""
        return PROMPT.format(prompt=question.extra["prompt"])

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        """The runnable program: the completion's code joined with the prompt where needed."""
        from dps_cli.tasks.grading.code import extract_program

        return extract_program(completion, question.extra["prompt"], question.extra["entry_point"])

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Run every program against its tests, ``workers`` at a time (default: one per core);
        ``detail`` is the run status.

        Each program runs isolated by bubblewrap (`dps_cli.tasks.grading.sandbox`); where that
        cannot start, this raises `UserError` unless ``unsafe_sandbox`` accepts the weaker
        in-process guard.
        """
        from dps_cli.tasks.grading.code import run_many

        programs = [self.extract_answer(c, q, order) or "" for q, c, order in items]
        cases = [
            (program, q.extra["test"], q.extra["entry_point"])
            for program, (q, _, _) in zip(programs, items, strict=True)
        ]
        results = run_many(cases, timeout_s=TEST_TIMEOUT_S, workers=workers, unsafe=unsafe_sandbox)
        return [
            Grade(answer=program, correct=result.passed, detail=result.status)
            for program, result in zip(programs, results, strict=True)
        ]
