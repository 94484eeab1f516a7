"""Integer extraction for arithmetic completions, and exact comparison."""

from __future__ import annotations

import pytest

from dps_cli.tasks.grading.integer import extract_integer_answer, integer_equal


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (r"3 + 4 = 7, so \boxed{7}. Check: 8", "7"),
        (r"\boxed{-12}", "-12"),
        (r"\boxed{1,234}", "1234"),
        (r"\boxed{10,\!080}", "10080"),
        (r"\boxed{x = 42}", "42"),
        (r"\boxed{12 \text{ apples}}", "12"),
        (r"\boxed{+007}", "7"),
        (r"\boxed{12.0}", "12"),
        (r"\boxed{3.5}, the answer is 4", "4"),
        ("So the answer is -5. Then I wrote 99 more words", "-5"),
        ("Answer: **1,000,000**", "1000000"),
        ("The answer is 3.\nNo wait, the answer is 6", "6"),
        ("12 * 3 - 4 = 32", "32"),
        ("12 * 3 - 4 = -32.", "-32"),
        ("We get 17 apples and 5 pears in total", "5"),
        ("5-3", "3"),
        ("the result is −8", "-8"),
        ("values 1,2,3", "3"),
        ("pi is 3.14159", None),
        ("step2 gives x3", None),
        ("no numbers", None),
        ("", None),
    ],
)
def test_extract_integer_answer(completion: str, expected: str | None) -> None:
    assert extract_integer_answer(completion) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("-12", "-12", True),
        ("1234", "1,234", True),
        ("007", "7", True),
        ("12", "-12", False),
        (None, "3", False),
        ("3.5", "3", False),
        ("three", "3", False),
        ("12345678901234567890", "12345678901234567890", True),
        ("12345678901234567891", "12345678901234567890", False),
    ],
)
def test_integer_equal(prediction: str | None, reference: str, expected: bool) -> None:
    assert integer_equal(prediction, reference) is expected


def test_integer_equal_rejects_a_non_integer_reference() -> None:
    with pytest.raises(ValueError, match="reference '1/2' is not an integer"):
        integer_equal("1", "1/2")
