"""The generated arithmetic task: determinism, correct answers, levels, prompt and grading."""

from __future__ import annotations

import ast
import json
import operator
import re
from collections import Counter
from pathlib import Path

import pytest

from dps_cli.errors import UserError
from dps_cli.tasks.arith import ArithTask, generate_questions
from dps_cli.tasks.base import Question

OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
# Word-problem templates, solved from their numbers by a rule written independently here.
WORD_RULES = [
    (r"has (\d+) \w+ and buys (\d+) more\.", lambda a, b: a + b),
    (r"has (\d+) \w+ and gives (\d+) of them away\.", lambda a, b: a - b),
    (r"buys (\d+) boxes with (\d+) \w+ in each box\.", lambda a, b: a * b),
    (r"has (\d+) \w+ and buys (\d+) bags with (\d+) \w+ in each bag\.", lambda a, b, c: a + b * c),
]


def evaluate(node: ast.expr) -> int:
    """Integer arithmetic on a parsed expression, without eval()."""
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return int(OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right)))
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    raise AssertionError(f"unexpected expression node {ast.dump(node)}")


def solve(text: str) -> int:
    expression = re.fullmatch(r"What is ([\d +*-]+)\?", text)
    if expression:
        return evaluate(ast.parse(expression.group(1), mode="eval").body)
    for pattern, rule in WORD_RULES:
        match = re.search(pattern, text)
        if match:
            return int(rule(*map(int, match.groups())))
    raise AssertionError(f"no rule solves {text!r}")


def test_default_set_is_200_questions_with_sequential_ids() -> None:
    questions = ArithTask().load()
    assert len(questions) == 200
    assert [q.id for q in questions[:2]] == ["arith-0000", "arith-0001"]
    assert questions[-1].id == "arith-0199"
    assert all(q.task == "arith" for q in questions)


def test_generation_is_deterministic_and_seeded() -> None:
    assert ArithTask().load() == ArithTask().load()
    assert generate_questions(20, seed=1) != generate_questions(20, seed=2)
    # Pinned: a changed generator would silently change every stored arith run.
    assert ArithTask().load()[0].text == "What is 11 - 22?"
    assert ArithTask().load()[0].reference == "-11"


def test_every_answer_is_right() -> None:
    for question in generate_questions(400):
        assert int(question.reference) == solve(question.text), question


def test_levels_kinds_and_negative_answers_are_present() -> None:
    questions = ArithTask().load()
    levels = Counter(q.extra["level"] for q in questions)
    kinds = Counter(q.extra["kind"] for q in questions)
    assert set(levels) == {"1", "2", "3"} and min(levels.values()) >= 40
    assert kinds["word"] == 50 and kinds["expression"] == 150
    assert any(int(q.reference) < 0 for q in questions)
    assert any("*" in q.text and ("+" in q.text or "-" in q.text) for q in questions)
    assert len({q.text for q in questions}) > 190


def test_prompt_is_exact() -> None:
    q = Question(task="arith", id="arith-0000", text="What is 7 * 6 - 13?", reference="29")
    assert ArithTask().user_message(q, None) == (
        "Solve the following problem. What is 7 * 6 - 13? "
        "Give the final answer as a single integer within \\boxed{}."
    )
    assert ArithTask().choice_order(q, 3) is None


def test_grading_compares_integers() -> None:
    q = Question(task="arith", id="arith-0001", text="What is 3 - 10?", reference="-7")
    grades = ArithTask().grade_many(
        [(q, "3 - 10 = -7, so \\boxed{-7}", None), (q, "\\boxed{7}", None), (q, "no idea", None)]
    )
    assert [(g.answer, g.correct) for g in grades] == [("-7", True), ("7", False), (None, False)]


def test_explicit_data_file(tmp_path: Path) -> None:
    rows = [
        {"question": "What is 2 + 2?", "answer": 4},
        {"question": "What is 1 - 3?", "answer": "-2"},
    ]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    questions = ArithTask().load(path)
    assert [(q.text, q.reference) for q in questions] == [
        ("What is 2 + 2?", "4"),
        ("What is 1 - 3?", "-2"),
    ]
    assert all(q.id.startswith("arith-") and len(q.id) == 18 for q in questions)
    reordered = tmp_path / "b.json"
    reordered.write_text(json.dumps(rows[::-1]), encoding="utf-8")
    assert {q.id for q in ArithTask().load(reordered)} == {q.id for q in questions}


def test_non_integer_answer_in_data_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"question": "Half of 3?", "answer": "1.5"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(
        UserError, match=r"Record 0 of data file .* has answer '1.5', not an integer"
    ):
        ArithTask().load(path)
