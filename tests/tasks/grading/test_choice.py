"""Choice-letter extraction: boxed first, then answer phrasing, then the last standalone letter."""

from __future__ import annotations

import pytest

from dps_cli.tasks.grading.choice import extract_choice_letter


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (r"\boxed{B}", "B"),
        (r"so it is \boxed{(C)}.", "C"),
        (r"$\boxed{\text{D}}$", "D"),
        (r"\boxed{\textbf{(A)}}", "A"),
        (r"\boxed{B) 42 eV}", "B"),
        (r"The answer is (B) but, boxed: \boxed{C}", "C"),
        (r"\boxed{A} first, \boxed{D} last", "D"),
        ("Therefore, the answer is (B).", "B"),
        ("The correct answer is: C", "C"),
        ("**Answer:** D", "D"),
        ("Answer: (A)", "A"),
        ("The correct option is B, not C.", "B"),
        ("the answer is option C", "C"),
        ("I first thought the answer is A. Re-checking, the answer is D.", "D"),
        ("Between B and C, I pick C", "C"),
        ("Option A is wrong. B it is.", "B"),
        ("No letter here, only 42.", None),
        ("", None),
    ],
)
def test_extract_choice_letter(completion: str, expected: str | None) -> None:
    assert extract_choice_letter(completion) == expected


def test_boxed_content_that_is_not_a_letter_falls_through_to_phrasing() -> None:
    assert extract_choice_letter(r"the answer is B, i.e. \boxed{42}") == "B"


def test_letters_outside_the_set_are_ignored() -> None:
    assert extract_choice_letter(r"\boxed{E}. The answer is (B)") == "B"
    assert extract_choice_letter(r"\boxed{E}", letters="ABCDE") == "E"
    assert extract_choice_letter("answer: E", letters="ABCD") is None


def test_lowercase_letters_and_words_starting_with_a_letter_do_not_count() -> None:
    assert extract_choice_letter("Both options b and c fail; Dalton's law") is None
    assert extract_choice_letter("the answer is b") is None


def test_invalid_letters_raise() -> None:
    with pytest.raises(ValueError, match="must be capital letters"):
        extract_choice_letter("A", letters="ab")
