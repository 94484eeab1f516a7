"""The result objects of `dps evaluate` and `dps passk`: plain data the pipeline fills in and the
report's tables and plots format (definitions of every figure: `dps_cli.pipeline.evaluate`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dps_cli.report.voting import VoteResult


@dataclass(frozen=True)
class LocalJudgeResult:
    """Win rate (percent) of a run's outputs against the reference outputs, per a local judge."""

    judge: str
    items: int
    win_rate: float
    win_rate_lo: float
    win_rate_hi: float


@dataclass(frozen=True)
class AlpacaResult:
    """Where the outputs are, how to judge them, and the win rates (percent) once judged."""

    outputs_path: str
    command: str
    win_rate: float | None
    lc_win_rate: float | None
    note: str
    local_judge: LocalJudgeResult | None = None


@dataclass(frozen=True)
class RunVotes:
    """maj@N and best-of-N of one run at one N (``--vote``)."""

    run: str
    method_label: str
    n: int
    majority: VoteResult
    best: VoteResult


@dataclass(frozen=True)
class Match:
    """The voting baseline whose tokens / question is closest to a target run's (``--match``)."""

    target: str
    source: str
    source_method_label: str
    n: int
    available_seeds: int
    target_tokens: float
    vote_tokens: float
    majority: VoteResult
    best: VoteResult

    @property
    def short_of_target(self) -> bool:
        """Whether every stored seed was used and still costs clearly fewer tokens than the target."""
        return self.n == self.available_seeds and self.vote_tokens < 0.9 * self.target_tokens


@dataclass(frozen=True)
class VoteCurve:
    """maj@N and best-of-N of one run for N = 1 .. its seeds (for the plot)."""

    run: str
    method_label: str
    majority: tuple[VoteResult, ...]
    best: tuple[VoteResult, ...]


@dataclass(frozen=True)
class VotingSection:
    """What `dps evaluate` adds with ``--vote``, ``--match`` and ``--plot``."""

    votes: tuple[RunVotes, ...] = ()
    matches: tuple[Match, ...] = ()
    curves: tuple[VoteCurve, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """One run's headline numbers (see the module docstring for the definitions)."""

    run: str
    label: str
    run_id: str
    task: str
    model: str
    method: str
    method_label: str
    questions: int
    samples: int
    graded_samples: int
    accuracy: float | None
    accuracy_lo: float | None
    accuracy_hi: float | None
    seconds_per_question: float | None
    mean_final_k: float | None
    tokens_per_question: float | None
    acceptance_rate: float | None
    alpaca: AlpacaResult | None = None
    # max over chains of the log q bound (schema column ``logq_bound``): 0 when log q is exact,
    # None for runs stored before the column existed
    logq_bound: float | None = None
    # Power-SMC runs: the weighted majority vote over each sample's particles (accuracy above is
    # the drawn particle's); None for other methods
    particle_vote: VoteResult | None = None


@dataclass(frozen=True)
class Comparison:
    """A run against the baseline (the first run) on the questions both answered."""

    baseline: str
    run: str
    shared_questions: int
    baseline_accuracy: float
    run_accuracy: float
    delta: float
    delta_lo: float
    delta_hi: float
    time_ratio: float | None


@dataclass(frozen=True)
class EvaluationReport:
    """Everything `dps evaluate` prints."""

    runs: list[RunSummary]
    comparisons: list[Comparison]
    voting: VotingSection = VotingSection()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``--json``)."""
        return {
            "runs": [asdict(summary) for summary in self.runs],
            "comparisons": [asdict(comparison) for comparison in self.comparisons],
            **asdict(self.voting),
        }


@dataclass(frozen=True)
class PasskPoint:
    """pass@k at one k: the mean over ``questions``, and those left out for lack of samples."""

    k: int
    value: float
    questions: int
    excluded: list[str]


@dataclass(frozen=True)
class RunPassk:
    """One run's pass@k curve."""

    run: str
    label: str
    method_label: str
    questions: int
    max_samples: int
    points: list[PasskPoint]


@dataclass(frozen=True)
class PasskReport:
    """Everything `dps passk` prints and plots."""

    runs: list[RunPassk]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``--json``)."""
        return {"runs": [asdict(run) for run in self.runs]}

    def max_k(self) -> int:
        """The largest k any run reaches."""
        return max((run.max_samples for run in self.runs), default=0)
