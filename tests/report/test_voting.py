"""Voting baselines: maj@N, its tie-break, best-of-N, compute matching, and answer equivalence."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dps_cli.errors import UserError
from dps_cli.pipeline.evaluate import evaluate_runs
from dps_cli.pipeline.scoring import LOGP_FILE
from dps_cli.pipeline.vote import equivalence, run_samples, vote_answers
from dps_cli.report.voting import (
    BEST_OF,
    MAJORITY,
    Sample,
    answer_classes,
    best_of,
    majority_vote,
    match_n,
    tokens_per_question,
    vote_results,
    weighted_majority,
)
from tests.factories import run_config, sample_row, use_fake_task, write_run


def s(seed: int, key: int | None, correct: bool, logp: float = -1.0, tokens: int = 10) -> Sample:
    return Sample(seed=seed, key=key, correct=correct, logp_mean=logp, tokens=tokens, seconds=0.5)


# ---------------------------------------------------------------- pure functions


def test_weighted_majority_sums_weights_not_heads() -> None:
    # Classes 0 (particles 0, 1, 2: weight 3 e^0) and 1 (particle 3: weight e^2 = 7.39): class 1 wins.
    assert weighted_majority([0, 0, 0, 1], [0.0, 0.0, 0.0, 2.0]) == 3
    # e^1 = 2.72 < 1 + e^-0.1 + 1 = 2.90: the light particles win, represented by their heaviest.
    assert weighted_majority([0, 0, 0, 1], [0.0, -0.1, 0.0, 1.0]) == 0
    assert weighted_majority([0, 0, 0, 1], [-0.1, 0.0, -0.1, 1.0]) == 1
    assert weighted_majority([0, 0, 0, 1], [-0.5, 0.0, -0.5, 1.0]) == 3  # 2.21 < 2.72


def test_weighted_majority_ties_non_answers_and_zero_weights() -> None:
    assert weighted_majority([1, 0], [0.0, 0.0]) == 0  # a tie goes to the class of the first particle
    assert weighted_majority([None, 0, None], [5.0, 0.0, 5.0]) == 1  # non-answers never vote
    assert weighted_majority([None, None], [0.0, 0.0]) is None
    assert weighted_majority([0, 1], [-math.inf, 0.0]) == 1  # a particle of zero weight cannot win
    with pytest.raises(ValueError, match="2 answer classes for 3 particle weights"):
        weighted_majority([0, 1], [0.0, 0.0, 0.0])


def test_majority_picks_the_most_frequent_class() -> None:
    samples = [s(0, 0, False), s(1, 1, True), s(2, 1, True), s(3, 2, False)]
    chosen = majority_vote(samples)
    assert chosen is not None and chosen.key == 1 and chosen.correct


def test_samples_without_an_answer_do_not_vote() -> None:
    samples = [s(0, None, False), s(1, None, False), s(2, 3, True)]
    chosen = majority_vote(samples)
    assert chosen is not None and chosen.key == 3
    assert majority_vote([s(0, None, False)]) is None


def test_tie_goes_to_the_class_with_the_higher_mean_logp() -> None:
    # classes 0 and 1 both have two votes; class 1's mean log p (-0.5) beats class 0's (-1.5)
    samples = [s(0, 0, False, -1.0), s(1, 0, False, -2.0), s(2, 1, True, -0.2), s(3, 1, True, -0.8)]
    chosen = majority_vote(samples)
    assert chosen is not None and chosen.key == 1 and chosen.seed == 2  # its most likely sample
    flipped = [s(0, 0, False, -0.1), s(1, 0, False, -0.1), s(2, 1, True, -0.2), s(3, 1, True, -0.8)]
    assert majority_vote(flipped).key == 0  # type: ignore[union-attr]


def test_tie_with_equal_logp_goes_to_the_class_seen_first() -> None:
    samples = [s(0, 5, False, -1.0), s(1, 7, True, -1.0)]
    assert majority_vote(samples).key == 5  # type: ignore[union-attr]


def test_best_of_n_takes_the_highest_mean_logp_and_ignores_votes() -> None:
    samples = [s(0, 0, False, -0.9), s(1, 0, False, -0.7), s(2, 1, True, -0.3)]
    assert best_of(samples).seed == 2
    assert best_of([s(0, 0, True, math.nan), s(1, 1, False, -5.0)]).seed == 1  # unknown is lowest
    assert best_of([s(3, 0, True, -1.0), s(1, 1, False, -1.0)]).seed == 1  # tie: lowest seed


def test_vote_results_use_the_first_n_seeds_and_count_their_tokens() -> None:
    per_question = {
        # maj@3 right (two votes of class 1); best-of-3 wrong (seed 0 is most likely)
        "q1": [s(0, 0, False, -0.1, 10), s(1, 1, True, -0.5, 20), s(2, 1, True, -0.6, 30),
               s(3, 0, False, -0.1, 1000)],
        # maj@3 wrong; best-of-3 right
        "q2": [s(0, 0, False, -0.9, 10), s(1, 0, False, -0.9, 10), s(2, 1, True, -0.2, 10),
               s(3, 1, True, -0.2, 10)],
    }  # fmt: skip
    majority, best = vote_results(per_question, 3)
    assert (majority.method, best.method) == (MAJORITY, BEST_OF)
    assert majority.accuracy == 0.5 and best.accuracy == 0.5
    assert majority.tokens_per_question == best.tokens_per_question == (60 + 30) / 2
    assert majority.seconds_per_question == 1.5
    one, _ = vote_results(per_question, 1)
    assert one.accuracy == 0.0 and one.tokens_per_question == 10
    assert majority.accuracy_lo is not None and majority.accuracy_lo <= 0.5 <= majority.accuracy_hi
    with pytest.raises(ValueError):
        vote_results(per_question, 5)


def test_match_picks_the_closest_n_and_the_smaller_on_a_tie() -> None:
    tokens = {1: 40.0, 2: 80.0, 3: 120.0, 4: 160.0}
    assert match_n(tokens, 130.0) == 3
    assert match_n(tokens, 100.0) == 2  # 80 and 120 are equally close
    assert match_n(tokens, 10_000.0) == 4
    per_question = {"q": [s(i, 0, True, tokens=40) for i in range(4)]}
    assert tokens_per_question(per_question, 3) == 120.0


def test_frac_one_half_and_zero_point_five_are_one_vote() -> None:
    keys = answer_classes([r"\frac12", "0.5", r"\dfrac{1}{2}", "2"], equivalence("math500"))
    assert keys[0] == keys[1] == keys[2] != keys[3]
    # and so they outvote a single different answer
    samples = [s(0, keys[0], True), s(1, keys[1], True), s(2, keys[3], False)]
    assert majority_vote(samples).correct  # type: ignore[union-attr]


def test_gpqa_votes_on_the_original_option_not_the_shown_letter() -> None:
    grades = pl.DataFrame(
        {"answer": ["A", "C", None], "grade_detail": ["choice 0", "choice 0", "no answer"]}
    )
    assert vote_answers("gpqa", grades) == ["choice 0", "choice 0", None]


# ------------------------------------------------------ through the run store


def answer_rows(answers: Mapping[str, Sequence[int]], logp: Mapping[str, Sequence[float]],
                tokens: int = 50, **overrides: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Rows whose boxed answer per seed is ``answers[qid][seed]``; log p coded in completion_ids."""
    rows = []
    for qid, values in answers.items():
        reference = int(qid.rsplit("-", 1)[1])
        for seed, value in enumerate(values):
            rows.append(sample_row(
                question_id=qid, seed=seed, reference=str(reference),
                completion=f"So \\boxed{{{value}}}.", answer=str(value),
                completion_ids=[int(round(-logp[qid][seed] * 100)) + 1, 7],
                tokens_generated=tokens, method="temperature", temperature=0.25, alpha=None,
                k_initial=None, final_k=None, proposals_attempted=0, proposals_accepted=0,
                **overrides,
            ))  # fmt: skip
    return rows


def fake_scores(model: str, prompts: Any, prompt_tokens: Any, completions: Any,
                device: str = "auto") -> list[float]:  # fmt: skip
    return [-(ids[0] - 1) / 100 for ids in completions]


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    use_fake_task(monkeypatch)
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> list[float]:
        calls.append(len(args[3]))
        return fake_scores(*args, **kwargs)

    monkeypatch.setattr("dps_cli.pipeline.scoring.score_completions", counting)
    return calls


# arith-0001: right answer 1. Seeds: 1, 5, 5, 1 -> maj@4 tie (1 vs 5), broken by log p.
ANSWERS = {"arith-0001": [1, 5, 5, 1], "arith-0002": [2, 2, 9, 9], "arith-0003": [7, 3, 3, 3]}
LOGP = {
    "arith-0001": [-0.2, -0.9, -0.9, -0.4],  # class "1" mean -0.3 beats class "5" -0.9: right
    "arith-0002": [-0.8, -0.8, -0.1, -0.3],  # tie broken to "9": wrong; best-of-4 "9": wrong
    "arith-0003": [-0.1, -0.5, -0.5, -0.5],  # maj "3" right; best-of-4 "7": wrong
}


def temperature_run(tmp_path: Path, name: str = "t025") -> Path:
    config = run_config(method="temperature", temperature=0.25)
    return write_run(tmp_path / name, answer_rows(ANSWERS, LOGP), config=config)


def test_evaluate_vote_reports_majority_and_best_of_n(tmp_path: Path, scored: list[int]) -> None:
    run = temperature_run(tmp_path)
    report = evaluate_runs([run], vote=4)
    (votes,) = report.voting.votes
    assert votes.majority.accuracy == pytest.approx(2 / 3)
    assert votes.best.accuracy == pytest.approx(1 / 3)  # q1 seed 0 "1" right; q2, q3 wrong
    assert votes.majority.tokens_per_question == 4 * 50
    assert (run / LOGP_FILE).is_file() and scored == [12]
    evaluate_runs([run], vote=2)
    assert scored == [12]  # log p reused from the cache


def test_run_samples_group_equivalent_answers(tmp_path: Path, scored: list[int]) -> None:
    run = temperature_run(tmp_path)
    grades = evaluate_runs([run]).runs  # grades the run
    assert grades
    from dps_cli.pipeline.grading import ensure_grades

    samples = run_samples(run, "arith", ensure_grades(run), None)
    assert [x.key for x in samples["arith-0001"]] == [0, 1, 1, 0]


def test_match_chooses_n_by_tokens(tmp_path: Path, scored: list[int]) -> None:
    temperature = temperature_run(tmp_path)
    power_rows = [sample_row(question_id=q, seed=0, reference=q[-1], completion=f"\\boxed{{{q[-1]}}}",
                             tokens_generated=140) for q in ANSWERS]  # fmt: skip
    power = write_run(tmp_path / "k8", power_rows)
    report = evaluate_runs([power, temperature], match=power)
    (match,) = report.voting.matches
    assert (match.n, match.target_tokens, match.vote_tokens) == (3, 140.0, 150.0)
    assert match.source == "t025" and match.target == "k8"
    assert match.majority.n == 3 and not match.short_of_target


def test_vote_larger_than_the_stored_seeds_is_a_user_error(tmp_path: Path, scored: list[int]) -> None:
    run = temperature_run(tmp_path)
    with pytest.raises(UserError, match="--vote 5 needs 5 seeds of every question"):
        evaluate_runs([run], vote=5)
    assert scored == []  # refused before any scoring


def test_mixed_tasks_are_a_user_error(tmp_path: Path, scored: list[int]) -> None:
    arith = temperature_run(tmp_path)
    other = write_run(tmp_path / "other", answer_rows(ANSWERS, LOGP), config=run_config("arith2"))
    with pytest.raises(UserError, match="mix tasks"):
        evaluate_runs([arith, other], vote=2)
