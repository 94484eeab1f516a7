"""Voting baselines over plain samples: majority vote (maj@N), best-of-N, and compute matching.

A question's first N seeds are its N samples. Definitions:

* maj@N — the answer given by the most samples wins, answers compared with the task's own
  equivalence (the caller groups them into classes with `answer_classes`); a sample without an
  answer does not vote. Ties between classes go to the class whose samples have the highest mean
  of the base model's mean per-token log p; a question where no sample answers counts as wrong.
  The question is right when the winning class is right (its most likely sample's grade).
* best-of-N — the one sample with the highest mean per-token log p under the base model (no
  external reward model); equal scores go to the lowest seed.
* tokens / question — ``tokens_generated`` summed over the N samples, averaged over questions;
  seconds / question likewise sums ``wall_time_s``.
* matching — the N whose tokens / question is closest to a target's (ties: the smaller N).
* weighted maj over particles (Power-SMC) — each of a sample's N particles votes with its
  normalized final weight; the answer class of largest total weight wins (ties: the class
  holding the lowest particle), represented by its heaviest particle. Tokens / question count
  every particle (they are the sample's ``tokens_generated``).

Accuracies carry a percentile-bootstrap interval over questions (`metrics.bootstrap_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dps_cli.report.metrics import bootstrap_ci

MAJORITY = "majority"
BEST_OF = "best-of-n"
WEIGHTED_MAJORITY = "weighted-majority"  # Power-SMC's vote over one sample's particles


@dataclass(frozen=True)
class Sample:
    """One sample of a question, as voting sees it."""

    seed: int
    key: int | None  # answer class (see `answer_classes`); None: no answer
    correct: bool | None  # None: not gradable locally
    logp_mean: float  # mean per-token log p under the base model; NaN if unknown
    tokens: int
    seconds: float


@dataclass(frozen=True)
class VoteResult:
    """A voting baseline at one N over a run's questions."""

    method: str  # MAJORITY or BEST_OF
    n: int
    questions: int
    accuracy: float | None
    accuracy_lo: float | None
    accuracy_hi: float | None
    tokens_per_question: float
    seconds_per_question: float


def answer_classes(answers: Sequence[str | None], equal: Callable[[str, str], bool]) -> list[int | None]:
    """Class ids for ``answers`` in order: each joins the first earlier class it equals.

    The result restricted to a prefix equals the classes of that prefix, so one pass over all
    seeds serves every N.
    """
    representatives: list[str] = []
    keys: list[int | None] = []
    for answer in answers:
        if answer is None:
            keys.append(None)
            continue
        for index, representative in enumerate(representatives):
            if answer == representative or equal(answer, representative):
                keys.append(index)
                break
        else:
            representatives.append(answer)
            keys.append(len(representatives) - 1)
    return keys


def majority_vote(samples: Sequence[Sample]) -> Sample | None:
    """The representative (most likely) sample of the winning class; None if nobody answered."""
    classes: dict[int, list[Sample]] = {}
    for sample in samples:
        if sample.key is not None:
            classes.setdefault(sample.key, []).append(sample)
    if not classes:
        return None
    top = max(len(members) for members in classes.values())
    tied = [members for members in classes.values() if len(members) == top]
    winner = max(tied, key=lambda members: (_mean_logp(members), -min(s.seed for s in members)))
    return best_of(winner)


def weighted_majority(keys: Sequence[int | None], log_weights: Sequence[float]) -> int | None:
    """The particle that represents the winning answer class; None if no particle answered.

    A class's weight is the log-sum-exp of its members' log weights (normalizing is a shared
    constant, so it cannot change the winner); ties go to the class whose first member comes
    first, and within the class to its heaviest particle (ties: the lowest index).
    """
    if len(keys) != len(log_weights):
        raise ValueError(f"{len(keys)} answer classes for {len(log_weights)} particle weights")
    members: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(index)
    if not members:
        return None
    weights = np.asarray(log_weights, dtype=np.float64)

    def total(indices: list[int]) -> float:
        top = float(np.max(weights[indices]))
        return top if top == -math.inf else top + math.log(float(np.sum(np.exp(weights[indices] - top))))

    winner = max(members.values(), key=lambda indices: (total(indices), -indices[0]))
    return max(winner, key=lambda index: (weights[index], -index))


def best_of(samples: Sequence[Sample]) -> Sample:
    """The sample with the highest mean per-token log p (unknown counts lowest; ties: lowest seed)."""
    if not samples:
        raise ValueError("best_of needs at least one sample")
    return max(samples, key=lambda s: (_score(s.logp_mean), -s.seed))


def vote_results(
    per_question: Mapping[str, Sequence[Sample]], n: int, rng_seed: int = 0
) -> tuple[VoteResult, VoteResult]:
    """maj@``n`` and best-of-``n`` over the first ``n`` seeds of every question."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    majority: list[float] = []
    best: list[float] = []
    tokens: list[float] = []
    seconds: list[float] = []
    for qid in sorted(per_question):
        chosen = sorted(per_question[qid], key=lambda s: s.seed)[:n]
        if len(chosen) < n:
            raise ValueError(f"question {qid} has {len(chosen)} samples, fewer than n={n}")
        tokens.append(float(sum(s.tokens for s in chosen)))
        seconds.append(float(sum(s.seconds for s in chosen)))
        if any(s.correct is None for s in chosen):
            continue
        voted = majority_vote(chosen)
        majority.append(float(voted is not None and bool(voted.correct)))
        best.append(float(bool(best_of(chosen).correct)))
    return (
        _result(MAJORITY, n, majority, tokens, seconds, rng_seed),
        _result(BEST_OF, n, best, tokens, seconds, rng_seed),
    )


def tokens_per_question(per_question: Mapping[str, Sequence[Sample]], n: int) -> float:
    """Mean over questions of the tokens generated by the first ``n`` samples."""
    totals = [
        sum(s.tokens for s in sorted(samples, key=lambda s: s.seed)[:n])
        for samples in per_question.values()
    ]
    return float(np.mean(totals)) if totals else math.nan


def match_n(tokens_by_n: Mapping[int, float], target: float) -> int:
    """The N whose tokens / question is closest to ``target`` (ties: the smaller N)."""
    if not tokens_by_n:
        raise ValueError("match_n needs at least one candidate N")
    return min(tokens_by_n, key=lambda n: (abs(tokens_by_n[n] - target), n))


def min_seeds(per_question: Mapping[str, Sequence[Sample]]) -> int:
    """The fewest samples any question has (0 for no questions)."""
    return min((len(samples) for samples in per_question.values()), default=0)


def _result(
    method: str, n: int, values: list[float], tokens: list[float], seconds: list[float], seed: int
) -> VoteResult:
    interval = (
        bootstrap_ci(np.asarray(values), rng=np.random.default_rng(seed)) if values else None
    )
    return VoteResult(
        method=method,
        n=n,
        questions=len(tokens),
        accuracy=interval[0] if interval else None,
        accuracy_lo=interval[1] if interval else None,
        accuracy_hi=interval[2] if interval else None,
        tokens_per_question=float(np.mean(tokens)) if tokens else math.nan,
        seconds_per_question=float(np.mean(seconds)) if seconds else math.nan,
    )


def _score(logp: float) -> float:
    return -math.inf if math.isnan(logp) else logp


def _mean_logp(samples: Sequence[Sample]) -> float:
    known = [s.logp_mean for s in samples if not math.isnan(s.logp_mean)]
    return float(np.mean(known)) if known else -math.inf
