"""Program extraction for HumanEval completions and the sandbox that runs them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dps_cli.tasks.grading.code import extract_program
from dps_cli.tasks.grading.sandbox import ExecResult, run_many, run_tests

PROMPT = 'from typing import List\n\n\ndef double(xs: List[int]) -> List[int]:\n    """Double."""\n'
TEST = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
CORRECT = "def double(xs):\n    return [2 * x for x in xs]\n"
WRONG = "def double(xs):\n    return xs\n"


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


def test_extracted_programs_pass_and_fail_as_expected() -> None:
    good = extract_program(f"```python\n{CORRECT}```", PROMPT, "double")
    bad = extract_program("    return xs\n", PROMPT, "double")
    results = run_many([(good, TEST, "double"), (bad, TEST, "double")], timeout_s=3)
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
]


@pytest.mark.parametrize(
    ("name", "program", "statuses"), ADVERSARIAL, ids=[case[0] for case in ADVERSARIAL]
)
def test_adversarial_programs_never_pass(name: str, program: str, statuses: set[str]) -> None:
    start = time.monotonic()
    result = run_tests(program, TEST, "double", timeout_s=2)
    assert not result.passed, name
    assert result.status in statuses, (name, result)
    assert time.monotonic() - start < 6.0, name


def test_early_exit_detail_names_the_cause() -> None:
    result = run_tests("import os\nos._exit(0)\n", TEST, "double", timeout_s=2)
    assert result.detail.startswith("exited with code 0 before its tests finished")
    result = run_tests("import sys\nsys.exit(0)\n", TEST, "double", timeout_s=2)
    assert result.detail.startswith("raised SystemExit")


def test_destructive_program_cannot_delete_anything(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    attacks = [
        "import shutil, os\nshutil.rmtree(os.getcwd())\n",
        f"import os\nos.remove({str(keep)!r})\n",
        f"import pathlib\npathlib.Path({str(keep)!r}).unlink()\n",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
    ]
    results = run_many([(attack + CORRECT, TEST, "double") for attack in attacks], timeout_s=3)
    assert [result.status for result in results] == ["error"] * len(attacks)
    assert all("PermissionError" in result.detail for result in results)
    assert keep.read_text() == "still here"


def test_working_directory_is_fresh_and_removed_afterwards() -> None:
    program = "import os\nassert not os.listdir('.'), 'not empty'\nassert False, os.getcwd()\n"
    result = run_tests(program, TEST, "double", timeout_s=3)
    assert result.status == "failed"
    cwd = result.detail.strip().splitlines()[-1].removeprefix("AssertionError: ")
    assert Path(cwd).name == "work" and not Path(cwd).exists()


def test_parent_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPS_SECRET_FOR_TEST", "1")
    program = "import os\nassert 'DPS_SECRET_FOR_TEST' not in os.environ\n" + CORRECT
    assert run_tests(program, TEST, "double", timeout_s=3).passed


def test_run_many_keeps_order_and_runs_in_parallel() -> None:
    slow = "import time\ntime.sleep(1)\n" + CORRECT
    cases = [(slow, TEST, "double"), (WRONG, TEST, "double")] * 2
    start = time.monotonic()
    results = run_many(cases, timeout_s=3, workers=4)
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
    results = run_many(canonical + empty)
    failing = [
        row["task_id"] for row, result in zip(rows, results[:164], strict=True) if not result.passed
    ]
    assert failing == []
    assert not any(result.passed for result in results[164:])
