"""GPQA's per-seed choice order and the mapping of the chosen letter back to the answer."""

from __future__ import annotations

import pytest

from dps_cli.tasks.base import Question
from dps_cli.tasks.gpqa import GpqaTask, shuffled_order

QUESTION = Question(
    task="gpqa",
    id="gpqa-0123456789ab",
    text="Which is right?",
    reference="right",
    choices=("right", "wrong 1", "wrong 2", "wrong 3"),
)


def test_order_is_a_deterministic_permutation_per_id_and_seed() -> None:
    task = GpqaTask()
    for seed in range(20):
        order = task.choice_order(QUESTION, seed)
        assert order is not None
        assert sorted(order) == [0, 1, 2, 3]
        assert order == task.choice_order(QUESTION, seed)
        assert order == shuffled_order(QUESTION.id, seed, 4)


def test_order_changes_across_seeds_and_questions() -> None:
    orders = {shuffled_order(QUESTION.id, seed, 4) for seed in range(40)}
    assert len(orders) >= 12  # 24 permutations exist; 40 draws hit most of them
    assert [shuffled_order("gpqa-other", s, 4) for s in range(8)] != [
        shuffled_order(QUESTION.id, s, 4) for s in range(8)
    ]


def test_correct_answer_position_is_roughly_uniform() -> None:
    counts = [0, 0, 0, 0]
    for seed in range(400):
        counts[shuffled_order(QUESTION.id, seed, 4).index(0)] += 1
    assert min(counts) > 60, counts


def test_order_is_pinned_across_versions() -> None:
    # A changed hash recipe would silently reshuffle every stored run: pin one value.
    assert shuffled_order("gpqa-0123456789ab", 0, 4) == (2, 3, 1, 0)
    assert shuffled_order("gpqa-0123456789ab", 1, 4) == (0, 2, 3, 1)


@pytest.mark.parametrize("seed", range(6))
def test_grading_maps_the_shown_letter_back_to_the_original_choice(seed: int) -> None:
    task = GpqaTask()
    order = task.choice_order(QUESTION, seed)
    assert order is not None
    message = task.user_message(QUESTION, order)
    right = "ABCD"[order.index(0)]
    assert f"{right}) right\n" in message
    wrong = "ABCD"[order.index(2)]
    items = [
        (QUESTION, f"So the answer is \\boxed{{{right}}}.", order),
        (QUESTION, f"So the answer is \\boxed{{{wrong}}}.", order),
        (QUESTION, "I am not sure.", order),
    ]
    grades = task.grade_many(items)
    assert [(g.answer, g.correct) for g in grades] == [(right, True), (wrong, False), (None, False)]
    assert grades[1].detail == "choice 2"


def test_grading_without_a_stored_order_is_a_bug() -> None:
    with pytest.raises(ValueError, match="not a permutation"):
        GpqaTask().grade_many([(QUESTION, "\\boxed{A}", None)])
