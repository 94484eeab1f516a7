"""The sandbox's bridge format, its refusal without bubblewrap, and the --unsafe-sandbox wiring."""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from dps_cli.errors import UserError
from dps_cli.tasks.base import Question
from dps_cli.tasks.grading import bubblewrap, sandbox
from dps_cli.tasks.grading.sandbox_runner import BridgeError, decode, encode
from dps_cli.tasks.humaneval import HumanEvalTask

PROMPT = 'def double(xs):\n    """Double each number."""\n'
TEST = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
CORRECT = "def double(xs):\n    return [2 * x for x in xs]\n"


PLAIN = [
    None,
    True,
    0,
    -(2**200),
    1.5,
    -0.0,
    math.inf,
    3 - 4j,
    "",
    "héllo \udc80",
    b"\x00\xff",
    [1, [2, [3]]],
    (1, "a", (None,)),
    {1, 2},
    frozenset({"x"}),
    {"a": [1], (1, 2): {"b": None}},
]


@pytest.mark.parametrize("value", PLAIN, ids=[repr(v)[:30] for v in PLAIN])
def test_plain_values_round_trip_as_exact_builtin_types(value: Any) -> None:
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def test_subclasses_travel_as_their_plain_base_type() -> None:
    class Number(enum.IntEnum):
        THREE = 3

    class Loud(str):
        def __str__(self) -> str:
            return "LOUD"

    point = collections.namedtuple("point", "x y")(1, 2)
    for value, plain in [
        (Number.THREE, 3),
        (Loud("ab"), "ab"),
        (point, (1, 2)),
        (collections.Counter("aab"), {"a": 2, "b": 1}),
        (bytearray(b"ab"), b"ab"),
    ]:
        back = decode(encode(value))
        assert back == plain and type(back) is type(plain)


def test_objects_and_deep_nesting_do_not_cross() -> None:
    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

    for value in [Anything(), (x for x in []), map(str, []), range(3), print]:
        with pytest.raises(BridgeError, match="cannot cross the sandbox boundary"):
            encode(value)
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(BridgeError, match="nested more than"):
        encode(deep)


@pytest.mark.parametrize(
    "data",
    [b"", b"X", b"i\xff\xff\xff\xff", b"l\x05\x00\x00\x00N", b"S\x01\x00\x00\x00l\x00\x00\x00\x00",
     b"NN", b"s\x01\x00\x00\x00\xff", b"d\x01\x00\x00\x00N"],
    ids=["empty", "unknown tag", "truncated int", "short list", "unhashable set item",
         "trailing bytes", "bad utf-8", "dict without value"],
)  # fmt: skip
def test_malformed_data_is_a_bridge_error(data: bytes) -> None:
    with pytest.raises(BridgeError, match="malformed"):
        decode(data)


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine without any bwrap binary."""
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: None)
    monkeypatch.setattr(bubblewrap.sys, "platform", "linux")
    bubblewrap.unavailable_reason.cache_clear()
    yield
    bubblewrap.unavailable_reason.cache_clear()


@pytest.mark.usefixtures("no_bwrap")
def test_without_bubblewrap_grading_refuses_in_one_sentence_naming_the_flag() -> None:
    with pytest.raises(UserError) as caught:
        sandbox.run_many([(CORRECT, TEST, "double")])
    message = str(caught.value)
    assert "no bwrap binary was found" in message and "--unsafe-sandbox" in message
    assert message.count(". ") == 0 and message.endswith(".")
    with pytest.raises(UserError):
        sandbox.run_tests(CORRECT, TEST, "double")
    [result] = sandbox.run_many([(CORRECT, TEST, "double")], unsafe=True)
    assert result.passed


def test_a_bwrap_that_cannot_start_is_named_with_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: str(fake))
    bubblewrap.unavailable_reason.cache_clear()
    try:
        reason = bubblewrap.unavailable_reason()
    finally:
        bubblewrap.unavailable_reason.cache_clear()
    assert (
        reason
        == f"{fake} could not start a sandbox here (bwrap: No permissions to create new namespace)"
    )


def test_not_linux_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bubblewrap.sys, "platform", "darwin")
    bubblewrap.unavailable_reason.cache_clear()
    try:
        assert str(bubblewrap.unavailable_reason()).startswith("bubblewrap needs Linux")
    finally:
        bubblewrap.unavailable_reason.cache_clear()


@pytest.mark.usefixtures("no_bwrap")
def test_humaneval_grading_takes_the_unsafe_flag() -> None:
    question = Question(
        task="humaneval",
        id="HumanEval/0",
        text="",
        reference="",
        extra={"prompt": "", "test": TEST, "entry_point": "double"},
    )
    task = HumanEvalTask()
    with pytest.raises(UserError, match="--unsafe-sandbox"):
        task.grade_many([(question, CORRECT, None)])
    [grade] = task.grade_many([(question, CORRECT, None)], unsafe_sandbox=True)
    assert grade.correct


def test_evaluate_offers_unsafe_sandbox() -> None:
    from dps_cli.cli.app import app

    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--unsafe-sandbox" in result.output


def test_a_sandbox_that_never_starts_is_a_failure_not_a_wrong_answer() -> None:
    broken = ["/bin/sh", "-c", "echo 'bwrap: Creating new namespace failed' >&2; exit 1", "sh"]
    with pytest.raises(RuntimeError, match="did not start in 3 tries.*Creating new namespace"):
        sandbox._run(broken, (CORRECT, TEST, "double"), timeout_s=3, unsafe=False)


def test_dps_evaluate_refuses_without_bubblewrap_and_grades_with_the_flag(
    tmp_path: Any, no_bwrap: None
) -> None:
    import json

    from dps_cli.cli.app import app
    from tests.factories import run_config, sample_row, write_run

    data = tmp_path / "humaneval.jsonl"
    problem = {"task_id": "HumanEval/0", "prompt": PROMPT, "entry_point": "double"}
    problem |= {"canonical_solution": "    return [2 * x for x in xs]\n", "test": TEST}
    data.write_text(json.dumps(problem) + "\n")
    row = sample_row(task="humaneval", question_id="HumanEval/0", prompt=problem["prompt"])
    row |= {"reference": "", "completion": f"```python\n{CORRECT}```", "answer": None}
    run = write_run(tmp_path / "run", [row], run_config("humaneval", data=str(data)))
    refused = CliRunner().invoke(app, ["evaluate", str(run), "--json"])
    assert refused.exit_code == 2
    assert "no bwrap binary was found" in refused.output and "--unsafe-sandbox" in refused.output
    graded = CliRunner().invoke(app, ["evaluate", str(run), "--json", "--unsafe-sandbox"])
    assert graded.exit_code == 0, graded.output
    assert json.loads(graded.stdout)["runs"][0]["accuracy"] == 1.0
