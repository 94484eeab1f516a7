"""A built-in arithmetic task, generated offline, that even the tiny embedded model can learn.

Questions come from a fixed generator seed, so every machine gets the same 200 problems with
the same ids (``arith-0000`` ...). Levels mix in a fixed cycle:

* level 1 — one-step sums/differences of small numbers ("What is 23 + 45?");
* level 2 — two-digit sums/differences and small products ("What is 64 - 87?", "What is 7 * 8?");
* level 3 — two-step expressions with a product ("What is 7 * 6 - 13?");
* short word problems at each of the three levels.

Answers are integers and may be negative. Random numbers come from SHA-256 in counter mode
rather than an RNG library, so the questions can never change with a numpy/Python upgrade.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from dps_cli.errors import UserError
from dps_cli.tasks.base import Grade, Question, TaskBase, grade_extracted
from dps_cli.tasks.loading import read_records_file, resolve_data_path, text_id, unique_questions

T = TypeVar("T")

GENERATOR_SEED = 2025
NUM_QUESTIONS = 200
#: File looked for when ``--data`` names a directory.
DATA_FILE_NAME = "arith.jsonl"
PROMPT = (
    "Solve the following problem. {question} "
    "Give the final answer as a single integer within \\boxed{{}}."
)
NAMES = ("Tom", "Anna", "Ravi", "Mei", "Lucas", "Sara", "Omar", "Julia")
ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "coins", "cards", "shells")


class HashDraws:
    """Deterministic integer draws for one question: SHA-256 of (seed, stream, counter)."""

    def __init__(self, seed: int, stream: int) -> None:
        self._prefix = f"arith\x00{seed}\x00{stream}\x00"
        self._counter = 0

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]`` (inclusive); modulo bias is below 2**-40."""
        digest = hashlib.sha256(f"{self._prefix}{self._counter}".encode()).digest()
        self._counter += 1
        return low + int.from_bytes(digest[:8], "big") % (high - low + 1)

    def pick(self, options: Sequence[T]) -> T:
        """One element of ``options``."""
        return options[self.integer(0, len(options) - 1)]


class Problem(NamedTuple):
    """One generated problem before it becomes a `Question`."""

    text: str
    answer: int
    level: int
    kind: str  # "expression" or "word"


def level1(draw: HashDraws) -> Problem:
    """One-step sum or difference of numbers up to 50."""
    a, b = draw.integer(1, 50), draw.integer(1, 50)
    if draw.integer(0, 1):
        return Problem(f"What is {a} + {b}?", a + b, 1, "expression")
    return Problem(f"What is {a} - {b}?", a - b, 1, "expression")


def level2(draw: HashDraws) -> Problem:
    """Two-digit sum or difference, or a product from the times tables."""
    op = draw.integer(0, 2)
    if op == 2:
        a, b = draw.integer(2, 12), draw.integer(2, 12)
        return Problem(f"What is {a} * {b}?", a * b, 2, "expression")
    a, b = draw.integer(10, 99), draw.integer(10, 99)
    if op == 0:
        return Problem(f"What is {a} + {b}?", a + b, 2, "expression")
    return Problem(f"What is {a} - {b}?", a - b, 2, "expression")


def level3(draw: HashDraws) -> Problem:
    """Two steps: a times-table product combined with a sum or difference."""
    a, b, c = draw.integer(2, 12), draw.integer(2, 12), draw.integer(1, 50)
    form = draw.integer(0, 3)
    if form == 0:
        return Problem(f"What is {a} * {b} + {c}?", a * b + c, 3, "expression")
    if form == 1:
        return Problem(f"What is {a} * {b} - {c}?", a * b - c, 3, "expression")
    if form == 2:
        return Problem(f"What is {c} + {a} * {b}?", c + a * b, 3, "expression")
    return Problem(f"What is {c} - {a} * {b}?", c - a * b, 3, "expression")


def word_problem(draw: HashDraws) -> Problem:
    """A short story problem and its level (1: sum/difference, 2: product, 3: two steps)."""
    name, item = draw.pick(NAMES), draw.pick(ITEMS)
    form = draw.integer(0, 3)
    if form == 0:
        a, b = draw.integer(2, 30), draw.integer(2, 30)
        text = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?"
        return Problem(text, a + b, 1, "word")
    if form == 1:
        a = draw.integer(5, 40)
        b = draw.integer(1, a)
        text = (
            f"{name} has {a} {item} and gives {b} of them away. "
            f"How many {item} does {name} have left?"
        )
        return Problem(text, a - b, 1, "word")
    if form == 2:
        a, b = draw.integer(2, 12), draw.integer(2, 12)
        text = (
            f"{name} buys {a} boxes with {b} {item} in each box. "
            f"How many {item} does {name} buy in total?"
        )
        return Problem(text, a * b, 2, "word")
    a, b, c = draw.integer(1, 30), draw.integer(2, 9), draw.integer(2, 12)
    text = (
        f"{name} has {a} {item} and buys {b} bags with {c} {item} in each bag. "
        f"How many {item} does {name} have now?"
    )
    return Problem(text, a + b * c, 3, "word")


#: The fixed cycle of problem makers: question i uses CYCLE[i % len(CYCLE)].
CYCLE: tuple[Callable[[HashDraws], Problem], ...] = (level1, level2, level3, word_problem)


def generate_questions(count: int = NUM_QUESTIONS, seed: int = GENERATOR_SEED) -> list[Question]:
    """``count`` arithmetic questions, identical for identical (count, seed)."""
    questions = []
    for i in range(count):
        problem = CYCLE[i % len(CYCLE)](HashDraws(seed, i))
        questions.append(
            Question(
                task=ArithTask.name,
                id=f"arith-{i:04d}",
                text=problem.text,
                reference=str(problem.answer),
                extra={"level": str(problem.level), "kind": problem.kind},
            )
        )
    return questions


class ArithTask(TaskBase):
    """Generated integer arithmetic, graded by exact integer match."""

    name = "arith"

    def __init__(self, count: int = NUM_QUESTIONS, seed: int = GENERATOR_SEED) -> None:
        self.count = count
        self.seed = seed

    def load(self, data: Path | None = None) -> list[Question]:
        """The generated questions, or those of ``data`` (fields question/answer, optional id).

        DPS_DATA_DIR is not consulted: the task needs no download.
        """
        if data is None:
            return generate_questions(self.count, self.seed)
        records = read_records_file(resolve_data_path(data, DATA_FILE_NAME))
        questions = []
        for i in range(len(records.rows)):
            text = records.field(i, "question", "problem", "prompt")
            answer = records.field(i, "answer")
            try:
                reference = str(int(answer.strip()))
            except ValueError:
                raise UserError(
                    f"Record {i} of {records.origin} has answer {answer!r}, not an integer.",
                    "The arith task grades integer answers only.",
                ) from None
            qid = records.field(i, "id", default=text_id(self.name, text))
            questions.append(Question(task=self.name, id=qid, text=text, reference=reference))
        return unique_questions(questions, records.origin)

    def user_message(self, question: Question, choice_order: tuple[int, ...] | None) -> str:
        """The problem wrapped in an instruction to box a single integer."""
        return PROMPT.format(question=question.text)

    def extract_answer(
        self, completion: str, question: Question, choice_order: tuple[int, ...] | None
    ) -> str | None:
        """The boxed (or last) integer of the completion, if any."""
        from dps_cli.tasks.grading.integer import extract_integer_answer

        return extract_integer_answer(completion)

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        """Correct iff the extracted integer equals the reference."""
        from dps_cli.tasks.grading.integer import integer_equal

        return grade_extracted(self, items, integer_equal)
