"""Program extraction for HumanEval completions and the sandbox that runs them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dps_cli.tasks.grading import bubblewrap
from dps_cli.tasks.grading.code import extract_program
from dps_cli.tasks.grading.sandbox import ExecResult, run_many, run_tests

PROMPT = 'from typing import List\n\n\ndef double(xs: List[int]) -> List[int]:\n    """Double."""\n'
TEST = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
CORRECT = "def double(xs):\n    return [2 * x for x in xs]\n"
WRONG = "def double(xs):\n    return xs\n"
# The classic forgery of in-process HumanEval checks: an answer equal to everything. Only plain
# data reaches the judge, so the object cannot cross, and the list subclass arrives as [].
EQ_ALWAYS = "class Anything:\n    __eq__ = lambda self, other: True\n"
EQ_ALWAYS_OBJECT = EQ_ALWAYS + "def double(xs):\n    return Anything()\n"
EQ_ALWAYS_LIST = (
    "class Anything(list):\n    __eq__ = lambda self, other: True\n"
    "def double(xs):\n    return Anything()\n"
)


def unsafe_sandbox_needed() -> bool:
    """True where bubblewrap cannot start here, so only the unsafe sandbox can run programs."""
    return bubblewrap.unavailable_reason() is not None


@pytest.fixture(
    params=[
        pytest.param(
            False,
            id="bwrap",
            marks=pytest.mark.skipif(
                unsafe_sandbox_needed(), reason=f"bubblewrap: {bubblewrap.unavailable_reason()}"
            ),
        ),
        pytest.param(True, id="unsafe"),
    ]
)
def unsafe(request: pytest.FixtureRequest) -> bool:
    """Each sandbox test runs in both modes: bubblewrap (where it starts) and --unsafe-sandbox."""
    return bool(request.param)


def test_fenced_block_defining_the_entry_point_follows_the_prompt() -> None:
    completion = f"Here:\n```python\n{CORRECT}```\nDone."
    assert extract_program(completion, PROMPT, "double") == PROMPT + CORRECT


def test_fenced_body_is_appended_to_the_prompt() -> None:
    body = "    return [2 * x for x in xs]\n"
    assert extract_program(f"```\n{body}```", PROMPT, "double") == PROMPT + body


def test_the_block_defining_the_entry_point_wins_over_the_first() -> None:
    completion = f"```python\nprint(double([1]))\n```\nand\n```py\n{CORRECT}```"
    assert extract_program(completion, PROMPT, "double") == PROMPT + CORRECT


def test_unclosed_fence_and_main_guard() -> None:
    completion = f"```python\n{CORRECT}\nif __name__ == '__main__':\n    print(double(input()))\n"
    assert extract_program(completion, PROMPT, "double") == PROMPT + CORRECT + "\n"


def test_unfenced_whole_program_is_used_like_a_block() -> None:
    completion = f"from typing import List\n\n{CORRECT}\ndef helper():\n    pass\n"
    assert extract_program(completion, PROMPT, "double") == PROMPT + completion


@pytest.mark.parametrize("stop", ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"])
def test_raw_continuation_is_cut_at_stop_sequences(stop: str) -> None:
    body = "    return [2 * x for x in xs]\n    # an indented comment stays\n"
    completion = f"{body}{stop}tail(): pass\n"
    assert extract_program(completion, PROMPT, "double") == PROMPT + body


def test_extracted_programs_pass_and_fail_as_expected(unsafe: bool) -> None:
    good = extract_program(f"```python\n{CORRECT}```", PROMPT, "double")
    bad = extract_program("    return xs\n", PROMPT, "double")
    results = run_many([(good, TEST, "double"), (bad, TEST, "double")], timeout_s=3, unsafe=unsafe)
    assert [result.status for result in results] == ["passed", "failed"]
    assert results[0] == ExecResult(True, "passed", "")
    assert "AssertionError" in results[1].detail


ADVERSARIAL = [
    ("infinite loop", "def double(xs):\n    while True:\n        pass\n", {"timeout"}),
    ("fork bomb", "import os\nwhile True:\n    os.fork()\n", {"error"}),
    ("subprocess", "import subprocess\nsubprocess.run(['true'])\n" + CORRECT, {"error"}),
    ("exit in function", "import sys\ndef double(xs):\n    sys.exit(0)\n", {"error"}),
    ("exit at top", "import sys\nsys.exit(0)\n" + CORRECT, {"error"}),
    ("hard exit", "import os\ndef double(xs):\n    os._exit(0)\n", {"error"}),
    ("print loop", "while True:\n    print('x' * 4096)\n", {"error"}),
    ("huge print", "print('x' * 10**8)\n" + CORRECT, {"error", "timeout"}),
    ("memory bomb", "block = bytearray(10**11)\n" + CORRECT, {"error"}),
    ("socket", "import socket\nsocket.socket()\n" + CORRECT, {"error"}),
    ("raw socket", "import _socket\n_socket.socket()\n" + CORRECT, {"error"}),
    ("syntax error", "def double(xs) return xs\n", {"error"}),
    ("reads stdin", "input()\n" + CORRECT, {"error"}),
    ("always-equal object", EQ_ALWAYS_OBJECT, {"error"}),
    ("always-equal list", EQ_ALWAYS_LIST, {"failed"}),
    ("generator for a list", "def double(xs):\n    return (2 * x for x in xs)\n", {"error"}),
]

# Tests that a program could pass in one shared namespace (the reference harness): a builtin the
# test uses, redefined; a StopIteration that ends the iteration calling the candidate.
FORGERIES = [
    (
        "def abs(x):\n    return 0\ndef half(x):\n    return 7\n",
        "def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-6\n",
        {"failed"},
    ),
    (
        "def half(x):\n    raise StopIteration\n",
        "def check(candidate):\n    assert all(map(lambda x: candidate(x) == x / 2, [1, 2]))\n",
        {"error"},
    ),
    (  # the candidate process gone between calls: not an exception a test can catch
        "import os, threading, time\n"
        "def half(x):\n"
        "    threading.Thread(target=lambda: (time.sleep(0.2), os._exit(0))).start()\n",
        "import time\n"
        "def check(candidate):\n"
        "    candidate(0)\n"
        "    time.sleep(0.6)\n"
        "    try:\n"
        "        candidate(1)\n"
        "    except Exception:\n"
        "        pass\n",
        {"error"},
    ),
]


@pytest.mark.parametrize(
    ("name", "program", "statuses"), ADVERSARIAL, ids=[case[0] for case in ADVERSARIAL]
)
def test_adversarial_programs_never_pass(
    name: str, program: str, statuses: set[str], unsafe: bool
) -> None:
    start = time.monotonic()
    result = run_tests(program, TEST, "double", timeout_s=2, unsafe=unsafe)
    assert not result.passed, name
    assert result.status in statuses, (name, result)
    assert time.monotonic() - start < 6.0, name


@pytest.mark.parametrize(
    ("program", "test", "statuses"), FORGERIES, ids=["builtin", "stop", "gone"]
)
def test_forgeries_of_a_shared_namespace_fail(
    program: str, test: str, statuses: set[str], unsafe: bool
) -> None:
    result = run_tests(program, test, "half", timeout_s=3, unsafe=unsafe)
    assert result.status in statuses, result


def test_early_exit_detail_names_the_cause(unsafe: bool) -> None:
    result = run_tests("import os\nos._exit(0)\n", TEST, "double", timeout_s=2, unsafe=unsafe)
    assert result.detail.startswith("exited with code 0 before its tests finished")
    result = run_tests("import sys\nsys.exit(0)\n", TEST, "double", timeout_s=2, unsafe=unsafe)
    assert result.detail.startswith("raised SystemExit")


def test_plain_data_of_any_shape_reaches_the_tests(unsafe: bool) -> None:
    test = (
        "import math\n"
        "def check(candidate):\n"
        "    assert candidate(3) == {'n': (3, 3.5, 3j, b'3', None, True), 's': {3}, 'f': frozenset()}\n"
        "    assert math.isnan(candidate(-1)) and candidate(-2) == float('inf')\n"
        "    assert candidate(10**5000) == 10**5000 and candidate(0) == Counter('aab')\n"
        "    assert HELPER == [1, 2] and helper(4) == 5 and json.dumps(1) == '1'\n"
    )
    program = (
        "import json\nfrom collections import Counter\nHELPER = [1, 2]\n"
        "def helper(x):\n    return x + 1\n"
        "def f(n):\n"
        "    if n == -1: return float('nan')\n"
        "    if n == -2: return float('inf')\n"
        "    if n == 0: return Counter('aab')\n"
        "    if n > 10: return n\n"
        "    return {'n': (n, n + 0.5, n * 1j, str(n).encode(), None, True), 's': {n}, 'f': frozenset()}\n"
    )
    result = run_tests(program, test, "f", timeout_s=5, unsafe=unsafe)
    assert result.passed, result.detail


def test_exceptions_from_the_program_reach_the_tests(unsafe: bool) -> None:
    test = (
        "def check(candidate):\n"
        "    try:\n"
        "        candidate(0)\n"
        "    except ZeroDivisionError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError('no exception')\n"
        "    assert candidate(2) == 0.5\n"
    )
    result = run_tests("def f(x):\n    return 1 / x\n", test, "f", timeout_s=3, unsafe=unsafe)
    assert result.passed, result.detail
    result = run_tests("def f(x):\n    raise KeyError(x)\n", test, "f", timeout_s=3, unsafe=unsafe)
    assert result.status == "error" and result.detail.startswith("raised KeyError")


def test_destructive_program_cannot_delete_anything(tmp_path: Path, unsafe: bool) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    attacks = [
        "import shutil, os\nshutil.rmtree(os.getcwd())\n",
        f"import os\nos.remove({str(keep)!r})\n",
        f"import pathlib\npathlib.Path({str(keep)!r}).unlink()\n",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
    ]
    cases = [(attack + CORRECT, TEST, "double") for attack in attacks]
    results = run_many(cases, timeout_s=3, unsafe=unsafe)
    assert [result.status for result in results] == ["error"] * len(attacks)
    # The guard refuses; inside bubblewrap the host path is not even there.
    refusals = ("PermissionError",) if unsafe else ("PermissionError", "FileNotFoundError")
    assert all(any(word in result.detail for word in refusals) for result in results)
    assert keep.read_text() == "still here"


def test_working_directory_is_fresh_and_private(unsafe: bool) -> None:
    program = "import os\nassert not os.listdir('.'), 'not empty'\nassert False, os.getcwd()\n"
    result = run_tests(program, TEST, "double", timeout_s=3, unsafe=unsafe)
    assert result.status == "failed"
    cwd = result.detail.strip().splitlines()[-1].removeprefix("AssertionError: ")
    if unsafe:
        assert Path(cwd).name == "work" and not Path(cwd).exists()
    else:
        assert cwd == "/tmp"  # the sandbox's own tmpfs, not the host's /tmp


def test_parent_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch, unsafe: bool) -> None:
    monkeypatch.setenv("DPS_SECRET_FOR_TEST", "1")
    program = "import os\nassert 'DPS_SECRET_FOR_TEST' not in os.environ\n" + CORRECT
    assert run_tests(program, TEST, "double", timeout_s=3, unsafe=unsafe).passed


def test_run_many_keeps_order_and_runs_in_parallel(unsafe: bool) -> None:
    slow = "import time\ntime.sleep(1)\n" + CORRECT
    cases = [(slow, TEST, "double"), (WRONG, TEST, "double")] * 2
    start = time.monotonic()
    results = run_many(cases, timeout_s=3, workers=4, unsafe=unsafe)
    assert [result.status for result in results] == ["passed", "failed"] * 2
    assert time.monotonic() - start < 3.0
    assert run_many([], timeout_s=3) == []


def test_invalid_limits_raise() -> None:
    with pytest.raises(ValueError, match="timeout_s=0 must be positive"):
        run_tests(CORRECT, TEST, "double", timeout_s=0)
    with pytest.raises(ValueError, match="workers=0 must be at least 1"):
        run_many([(CORRECT, TEST, "double")], workers=0)


def _humaneval_path() -> Path | None:
    data_dir = os.environ.get("DPS_DATA_DIR")
    path = Path(data_dir) / "humaneval.jsonl" if data_dir else None
    return path if path is not None and path.is_file() else None


@pytest.mark.skipif(_humaneval_path() is None, reason="DPS_DATA_DIR does not hold humaneval.jsonl")
def test_humaneval_canonical_solutions_pass_and_empty_completions_fail() -> None:
    """In the strongest sandbox this machine has: bubblewrap, else the unsafe one."""
    path = _humaneval_path()
    assert path is not None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) == 164
    canonical = [
        (
            extract_program(row["canonical_solution"], row["prompt"], row["entry_point"]),
            row["test"],
            row["entry_point"],
        )
        for row in rows
    ]
    expected = [row["prompt"] + row["canonical_solution"] for row in rows]
    assert [case[0] for case in canonical] == expected
    empty = [
        (extract_program("", row["prompt"], row["entry_point"]), row["test"], row["entry_point"])
        for row in rows
    ]
    results = run_many(canonical + empty, unsafe=unsafe_sandbox_needed())
    failing = [
        row["task_id"] for row, result in zip(rows, results[:164], strict=True) if not result.passed
    ]
    assert failing == []
    assert not any(result.passed for result in results[164:])
