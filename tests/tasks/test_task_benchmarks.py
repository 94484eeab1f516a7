"""Each benchmark's loader on small files, its stable ids, and its exact prompt wording."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dps_cli.tasks import TASKS, get_task
from dps_cli.tasks.base import Question

MATH_ROWS = [
    {"prompt": "What is $1+1$?", "answer": "2", "id": "test/algebra/1.json", "source": "math"},
    {"prompt": "What is $2+2$?", "answer": "4", "id": "test/algebra/2.json", "source": "math"},
    {"prompt": "What is $3+3$?", "answer": "6", "id": "test/algebra/3.json", "source": "math"},
]
GPQA_ROWS = [
    {
        "Question": f"Question {i}?\n",
        "Correct Answer": f"right {i}",
        "Incorrect Answer 1": f"wrong {i}a",
        "Incorrect Answer 2": f"wrong {i}b\n",
        "Incorrect Answer 3": f"wrong {i}c",
        "Explanation": "because",
    }
    for i in range(3)
]
HUMANEVAL_ROWS = [
    {
        "task_id": f"HumanEval/{i}",
        "prompt": f'def f{i}(x):\n    """Return x + {i}."""\n',
        "canonical_solution": f"    return x + {i}\n",
        "test": f"def check(candidate):\n    assert candidate(1) == {1 + i}\n",
        "entry_point": f"f{i}",
    }
    for i in range(3)
]
ALPACA_ROWS = [
    {
        "instruction": f"Write a haiku about {w}.",
        "output": "...",
        "generator": "gpt4",
        "dataset": "d",
    }
    for w in ("rain", "snow", "sun")
]
CASES = {
    "math500": MATH_ROWS,
    "gpqa": GPQA_ROWS,
    "humaneval": HUMANEVAL_ROWS,
    "alpacaeval": ALPACA_ROWS,
}
REAL_FILES = {"math500": 500, "gpqa": 198, "humaneval": 164}
#: Read before any test clears it: the real benchmark files, when the machine has them.
REAL_DATA_DIR = os.environ.get("DPS_DATA_DIR")


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DPS_DATA_DIR", raising=False)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def load(name: str, rows: list[dict[str, Any]], path: Path) -> list[Question]:
    return get_task(name).load(write_jsonl(path, rows))


@pytest.mark.parametrize("name", sorted(CASES))
def test_ids_survive_reordering_and_are_unique(name: str, tmp_path: Path) -> None:
    rows = CASES[name]
    forward = load(name, rows, tmp_path / "a.jsonl")
    backward = load(name, rows[::-1], tmp_path / "b.jsonl")
    assert [q.id for q in forward] == [q.id for q in backward][::-1]
    assert {q.id: q for q in forward} == {q.id: q for q in backward}
    assert len({q.id for q in forward}) == len(rows)
    assert all(q.task == name for q in forward)


def test_math500_fields_from_local_file(tmp_path: Path) -> None:
    first = load("math500", MATH_ROWS, tmp_path / "m.jsonl")[0]
    assert first == Question(
        task="math500",
        id="test/algebra/1.json",
        text="What is $1+1$?",
        reference="2",
        extra={"source": "math"},
    )


def test_math500_without_id_gets_a_text_hash(tmp_path: Path) -> None:
    [q] = load("math500", [{"problem": "x?", "answer": "1"}], tmp_path / "m.jsonl")
    assert q.id.startswith("math500-") and len(q.id) == len("math500-") + 12


def test_gpqa_fields_are_stripped_and_correct_answer_first(tmp_path: Path) -> None:
    q = load("gpqa", GPQA_ROWS, tmp_path / "g.jsonl")[0]
    assert q.text == "Question 0?"
    assert q.choices == ("right 0", "wrong 0a", "wrong 0b", "wrong 0c")
    assert q.reference == "right 0"
    assert q.id.startswith("gpqa-") and len(q.id) == 17


def test_humaneval_keeps_what_grading_needs(tmp_path: Path) -> None:
    q = load("humaneval", HUMANEVAL_ROWS, tmp_path / "h.jsonl")[1]
    assert q.id == "HumanEval/1"
    assert q.text == HUMANEVAL_ROWS[1]["prompt"]
    assert q.reference == "    return x + 1\n"
    assert dict(q.extra) == {
        "prompt": HUMANEVAL_ROWS[1]["prompt"],
        "test": HUMANEVAL_ROWS[1]["test"],
        "entry_point": "f1",
    }


def test_alpacaeval_fields(tmp_path: Path) -> None:
    q = load("alpacaeval", ALPACA_ROWS, tmp_path / "a.jsonl")[0]
    assert q.text == "Write a haiku about rain."
    assert q.reference == "..."
    assert dict(q.extra) == {"generator": "gpt4", "dataset": "d"}
    assert q.id.startswith("alpacaeval-")


def test_math500_prompt_is_exact() -> None:
    task = get_task("math500")
    q = Question(task="math500", id="x", text="What is $1+1$?", reference="2")
    assert task.user_message(q, None) == (
        "Can you solve the following math problem? What is $1+1$? "
        "Please reason step by step, and put your final answer within \\boxed{}."
    )


def test_gpqa_prompt_lays_out_choices_in_the_given_order() -> None:
    task = get_task("gpqa")
    q = Question(task="gpqa", id="g", text="Pick?", reference="r", choices=("r", "w1", "w2", "w3"))
    assert task.user_message(q, (2, 0, 3, 1)) == (
        "Pick?\n\nA) w2\nB) r\nC) w3\nD) w1\n\n"
        "Please reason step by step, and put the letter of your final answer "
        "(A, B, C or D) within \\boxed{}."
    )
    with pytest.raises(ValueError, match="not a permutation"):
        task.user_message(q, (0, 0, 1, 2))
    with pytest.raises(ValueError, match="not a permutation"):
        task.user_message(q, None)


def test_humaneval_chat_prompt_wraps_the_function(tmp_path: Path) -> None:
    q = load("humaneval", HUMANEVAL_ROWS, tmp_path / "h.jsonl")[0]
    assert get_task("humaneval").user_message(q, None) == (
        "Complete the following Python function. Return the whole function in a ```python code "
        'block.\n\n```python\ndef f0(x):\n    """Return x + 0."""\n```'
    )


def test_alpacaeval_prompt_is_the_instruction_and_grade_waits_for_a_judge() -> None:
    task = get_task("alpacaeval")
    q = Question(task="alpacaeval", id="a", text="Say hi.", reference="Hi!")
    assert task.user_message(q, None) == "Say hi."
    [grade] = task.grade_many([(q, "  Hello there.\n", None)])
    assert (grade.answer, grade.correct) == ("Hello there.", None)
    assert task.extract_answer("   ", q, None) is None


@pytest.mark.skipif(REAL_DATA_DIR is None, reason="DPS_DATA_DIR is not set")
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_local_files(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert REAL_DATA_DIR is not None
    source = importlib.import_module(f"dps_cli.tasks.{name}").SOURCE
    if not (Path(REAL_DATA_DIR) / source.file_name).is_file():
        pytest.skip(f"{REAL_DATA_DIR} has no {source.file_name}")
    monkeypatch.setenv("DPS_DATA_DIR", REAL_DATA_DIR)
    questions = get_task(name).load()
    assert len(questions) == REAL_FILES[name]
    assert len({q.id for q in questions}) == len(questions)
    if name == "math500":
        assert questions[0].id == "test/precalculus/807.json"
    if name == "humaneval":
        assert questions[0].id == "HumanEval/0"
        assert questions[0].extra["entry_point"] == "has_close_elements"
    if name == "gpqa":
        assert all(len(q.choices) == 4 and q.choices[0] == q.reference for q in questions)


def test_math500_grading_checks_the_boxed_answer() -> None:
    task = get_task("math500")
    q = Question(task="math500", id="m", text="Half of one?", reference="\\frac{1}{2}")
    grades = task.grade_many(
        [(q, "So \\boxed{\\frac{1}{2}}.", None), (q, "So \\boxed{3}.", None), (q, "Hmm.", None)]
    )
    assert [g.correct for g in grades] == [True, False, False]
    assert grades[0].answer == "\\frac{1}{2}"
    assert (grades[2].answer, grades[2].detail) == (None, "no answer")


def test_humaneval_grading_runs_the_tests(tmp_path: Path) -> None:
    task = get_task("humaneval")
    q = load("humaneval", HUMANEVAL_ROWS, tmp_path / "h.jsonl")[2]
    right = "```python\ndef f2(x):\n    return x + 2\n```"
    wrong = "    return x - 2\n"
    grades = task.grade_many([(q, right, None), (q, wrong, None)])
    assert [g.correct for g in grades] == [True, False]
    assert grades[0].answer is not None and "return x + 2" in grades[0].answer
    assert grades[0].detail != grades[1].detail


def test_humaneval_grading_takes_a_worker_count(tmp_path: Path) -> None:
    task = get_task("humaneval")
    q = load("humaneval", HUMANEVAL_ROWS, tmp_path / "h.jsonl")[2]
    right = "```python\ndef f2(x):\n    return x + 2\n```"
    grades = task.grade_many([(q, right, None)] * 3, workers=1)
    assert [g.correct for g in grades] == [True, True, True]


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_takes_the_protocols_grading_options(name: str) -> None:
    """``workers`` and ``unsafe_sandbox`` are part of `Task.grade_many` for every task."""
    assert get_task(name).grade_many([], workers=1, unsafe_sandbox=False) == []
