"""Math answer extraction and equivalence (math-verify plus the normalization pre-pass)."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dps_cli.tasks.grading.math import (
    extract_boxed,
    extract_math_answer,
    math_equal,
    normalize_math_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{5}.", "5"),
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\{1\pm\sqrt{5},-2\}}", r"\{1\pm\sqrt{5},-2\}"),
        (r"\fbox{x^{2}}", "x^{2}"),
        (r"$\boxed 5$", "5"),
        (r"\boxed{2} and a truncated \boxed{\frac{3", "2"),
        (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"\boxed{}", ""),
        ("no box here", None),
        (r"\boxedx{3}", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (r"Thus $x = \boxed{7}$. The answer is 8.", "7"),
        (r"Final Answer: The final answer is $\frac{3}{4}$. I hope it is correct.", r"\frac{3}{4}"),
        ("So the answer is 12 apples. Done", "12 apples"),
        (r"the answer is \(2\sqrt{3}\)", r"2\sqrt{3}"),
        ("work...\n**Answer:** 42\n", "42"),
        ("The answer is 3.\nWait, the answer is 4.", "4"),
        (r"\boxed{} and then nothing", None),
        ("I computed 3 + 4 = 7 and stopped", None),
    ],
)
def test_extract_math_answer(completion: str, expected: str | None) -> None:
    assert extract_math_answer(completion) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (r"\dfrac{17}{50}", r"\frac{17}{50}"),
        (r"10,\!080", "10080"),
        (r"11,\! 111,\! 111,\! 100", "11111111100"),
        (r"\$32,\!348", "32348"),
        (r"106^\circ", "106"),
        (r"75^{\circ}", "75"),
        (r"10\%", "10"),
        (r"5.4 \text{ cents}", "5.4"),
        (r"864 \mbox{ inches}^2", "864"),
        (r"\frac{270}7\text{ degrees}", r"\frac{270}7"),
        (r"\text{(B)}", "B"),
        (r"\text{Evelyn}", "Evelyn"),
        ("12 cm.", "12"),
        (r"$\left( 3, \frac{\pi}{2} \right)$", r"( 3, \frac{\pi}{2} )"),
        ("3, 5, 7", "3, 5, 7"),
    ],
)
def test_normalize_math_answer(answer: str, expected: str) -> None:
    assert normalize_math_answer(answer) == expected


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("0.5", r"\frac{1}{2}"),
        (r"\dfrac12", "0.5"),
        (r"(3,\pi/2)", r"\left( 3, \frac{\pi}{2} \right)"),
        ("10", r"10\%"),
        (r"10\%", "10"),
        ("5", r"5 \text{ cm}"),
        ("B", r"\text{(B)}"),
        ("(B)", r"\text{(B)}"),
        ("Evelyn", r"\text{Evelyn}"),
        ("10080", r"10,\!080"),
        ("18.9", r"\$18.90"),
        ("30", r"30^\circ"),
        (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
        (r"[-2, 7]", r"x \in [-2,7]"),
        (r"y=2x+3", r"y = 2x + 3"),
        (r"\{-2, 1\pm\sqrt{5}\}", r"\{1\pm\sqrt{5},-2\}"),
    ],
)
def test_math_equal_accepts_equivalent_forms(prediction: str, reference: str) -> None:
    assert math_equal(prediction, reference)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("3", "5"),
        ("0.5", r"\frac{1}{3}"),
        ("(3, 2)", "(2, 3)"),
        ("C", r"\text{(B)}"),
        ("Navin", r"\text{Evelyn}"),
        ("", "5"),
        ("5", ""),
        ("x^2+1", "x^2-1"),
    ],
)
def test_math_equal_rejects_different_values(prediction: str, reference: str) -> None:
    assert not math_equal(prediction, reference)


def test_math_equal_rejects_nonpositive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_s=0 must be positive"):
        math_equal("1", "1", timeout_s=0)


def test_math_equal_gives_up_on_a_pathological_expression_in_time() -> None:
    start = time.monotonic()
    assert not math_equal("9^{9^{9}}", "5", timeout_s=1.0)
    assert time.monotonic() - start < 2.0


def test_math_equal_restores_an_outer_interval_timer() -> None:
    fired: list[int] = []

    def outer_handler(signum: int, frame: object) -> None:
        fired.append(signum)

    old = signal.signal(signal.SIGALRM, outer_handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert math_equal("0.5", r"\frac{1}{3}") is False
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < remaining <= 30.0
        assert signal.getsignal(signal.SIGALRM) is outer_handler
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_math_equal_off_the_main_thread_uses_a_child_process() -> None:
    pairs = [("0.5", r"\frac{1}{2}"), ("0.5", r"\frac{1}{3}"), ("9^{9^{9}}", "5")]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda pair: math_equal(*pair, timeout_s=1.0), pairs))
    assert results == [True, False, False]
    assert time.monotonic() - start < 8.0


def _math500_path() -> Path | None:
    data_dir = os.environ.get("DPS_DATA_DIR")
    path = Path(data_dir) / "math500.json" if data_dir else None
    return path if path is not None and path.is_file() else None


@pytest.mark.skipif(_math500_path() is None, reason="DPS_DATA_DIR does not hold math500.json")
def test_every_math500_reference_grades_equal_to_itself_boxed() -> None:
    path = _math500_path()
    assert path is not None
    items = json.loads(path.read_text())
    assert len(items) == 500
    failures = []
    for item in items:
        reference = item["answer"]
        extracted = extract_math_answer(f"We conclude $\\boxed{{{reference}}}$.")
        if extracted != reference.strip() or not math_equal(extracted, reference):
            failures.append((item["id"], reference, extracted))
    assert failures == []


@pytest.mark.skipif(_math500_path() is None, reason="DPS_DATA_DIR does not hold math500.json")
def test_every_normalized_math500_reference_parses_to_mathematics() -> None:
    """Equal strings short-cut `math_equal`, so also check the parser sees every reference."""
    from math_verify import parse

    path = _math500_path()
    assert path is not None
    unparsed = []
    for item in json.loads(path.read_text()):
        normalized = normalize_math_answer(item["answer"])
        parsed = parse(f"\\boxed{{{normalized}}}", parsing_timeout=5)
        if not parsed or isinstance(parsed[0], str):
            unparsed.append((item["id"], item["answer"], normalized))
    assert unparsed == []
