"""Compute-matched voting baselines for `dps evaluate --vote N`, ``--match RUN`` and ``--plot``.

Joins a run's grades, its token and time columns and the base model's mean per-token log p
(`dps_cli.pipeline.scoring`) into per-question samples, groups each question's answers with the
task's own equivalence, and hands them to `dps_cli.report.voting` (definitions there).

Equivalence per task: math500 — math-verify (`math_equal`: ``\\frac12`` and ``0.5`` are one
vote); arith — integer equality; gpqa — the original index of the chosen option (the letter
means a different option under each seed's shuffle); humaneval — identical extracted programs;
any other task — identical answer strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dps_cli.errors import UserError
from dps_cli.report.results import Match, RunSummary, RunVotes, VoteCurve, VotingSection
from dps_cli.report.voting import (
    Sample,
    answer_classes,
    match_n,
    min_seeds,
    vote_results,
)
from dps_cli.runs.store import RunStore

if TYPE_CHECKING:
    import polars as pl

MH_METHODS = ("power", "dps")
#: Methods whose samples are not plain draws, so no voting baseline is built from them.
NOT_PLAIN = (*MH_METHODS, "smc")


def equivalence(task: str) -> Callable[[str, str], bool]:
    """The answer equivalence of ``task`` (see the module docstring)."""
    if task == "math500":
        from dps_cli.tasks.grading.math import math_equal

        return math_equal
    if task == "arith":
        from dps_cli.tasks.grading.integer import integer_equal

        return integer_equal
    return lambda a, b: a.strip() == b.strip()


def vote_answers(task: str, grades: pl.DataFrame) -> list[str | None]:
    """The strings voting compares, in ``grades`` order (gpqa: the original option index)."""
    return answer_strings(task, grades["answer"].to_list(), grades["grade_detail"].to_list())


def answer_strings(task: str, answers: Sequence[str | None], details: Sequence[str | None]) -> list[str | None]:
    """`vote_answers` over plain lists of extracted answers and their grades' details."""
    if task != "gpqa":
        return list(answers)
    return [detail if answer is not None else None for answer, detail in zip(answers, details, strict=True)]


def run_samples(run_dir: Path, task: str, grades: pl.DataFrame, logp: pl.DataFrame | None) -> dict[str, list[Sample]]:
    """Per question, its samples in seed order, with answer classes from the task's equivalence."""
    import polars as pl

    costs = (
        RunStore.open_existing(Path(run_dir)).scan()
        .select("question_id", "seed", "tokens_generated", "wall_time_s").collect()
    )  # fmt: skip
    frame = grades.join(costs, on=["question_id", "seed"], how="left")
    if logp is not None:
        frame = frame.join(logp.select("question_id", "seed", "logp_mean"), on=["question_id", "seed"], how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("logp_mean"))
    frame = frame.sort("question_id", "seed")
    equal = equivalence(task)
    answers = vote_answers(task, frame)
    per_question: dict[str, list[Sample]] = {}
    rows = list(frame.select("question_id", "seed", "correct", "logp_mean", "tokens_generated", "wall_time_s").iter_rows())
    start = 0
    while start < len(rows):
        stop = start
        while stop < len(rows) and rows[stop][0] == rows[start][0]:
            stop += 1
        keys = answer_classes(answers[start:stop], equal)
        per_question[rows[start][0]] = [
            Sample(seed=int(seed), key=key, correct=correct,
                   logp_mean=float("nan") if logp_mean is None else float(logp_mean),
                   tokens=int(tokens or 0), seconds=float(seconds or 0.0))
            for (_, seed, correct, logp_mean, tokens, seconds), key in zip(rows[start:stop], keys, strict=True)
        ]  # fmt: skip
        start = stop
    return per_question


def check_same_task(summaries: Sequence[RunSummary]) -> None:
    """Voting, matching and the plot compare runs of one task; refuse a mix."""
    tasks = sorted({summary.task for summary in summaries})
    if len(tasks) > 1:
        raise UserError(
            f"The runs mix tasks ({', '.join(tasks)}); voting, --match and --plot compare runs of one task.",
            "Evaluate each task's runs separately.",
        )


def check_seeds(label: str, have: int, n: int) -> None:
    """``--vote n`` needs n seeds of every question; ``have`` is the fewest any question has."""
    if n > have:
        raise UserError(
            f"--vote {n} needs {n} seeds of every question, but run {label} stores only {have} for some question.",
            f"Use --vote {have} or less, or sample more seeds (dps sample ... --seeds 0-{n - 1}).",
        )


def run_votes(label: str, method_label: str, per_question: Mapping[str, Sequence[Sample]], n: int) -> RunVotes:
    """maj@n and best-of-n of one run (``--vote n``)."""
    check_seeds(label, min_seeds(per_question), n)
    majority, best = vote_results(per_question, n)
    return RunVotes(run=label, method_label=method_label, n=n, majority=majority, best=best)


def match_votes(
    target: RunSummary, source: RunSummary, per_question: Mapping[str, Sequence[Sample]]
) -> Match:
    """The N of ``source``'s samples whose tokens / question is closest to ``target``'s."""
    if target.tokens_per_question is None:
        raise UserError(f"Run {target.label} records no tokens_generated, so there is nothing to match.")
    available = min_seeds(per_question)
    curve = vote_curve(source, per_question)
    tokens = {result.n: result.tokens_per_question for result in curve.majority}
    n = match_n(tokens, target.tokens_per_question)
    return Match(
        target=target.label, source=source.label, source_method_label=source.method_label, n=n,
        available_seeds=available, target_tokens=target.tokens_per_question, vote_tokens=tokens[n],
        majority=curve.majority[n - 1], best=curve.best[n - 1],
    )  # fmt: skip


def vote_curve(source: RunSummary, per_question: Mapping[str, Sequence[Sample]]) -> VoteCurve:
    """maj@N and best-of-N for N = 1 .. the fewest seeds any question has."""
    results = [vote_results(per_question, n) for n in range(1, min_seeds(per_question) + 1)]
    return VoteCurve(
        run=source.label, method_label=source.method_label,
        majority=tuple(r[0] for r in results), best=tuple(r[1] for r in results),
    )  # fmt: skip


def voting_sources(summaries: Sequence[RunSummary], exclude: str | None = None) -> list[RunSummary]:
    """Runs of plain samples (temperature, greedy): the ones voting baselines are built from."""
    return [s for s in summaries if s.method not in NOT_PLAIN and s.label != exclude]


def voting_section(
    run_dirs: Sequence[Path],
    summaries: Sequence[RunSummary],
    grades: Sequence[pl.DataFrame],
    vote: int | None = None,
    match: Path | None = None,
    curves: bool = False,
    device: str = "auto",
) -> VotingSection:
    """maj@N / best-of-N per run (``vote``), the compute-matched baseline (``match``), curves."""
    from dps_cli.pipeline.scoring import ensure_logp

    if vote is None and match is None and not curves:
        return VotingSection()
    check_same_task(summaries)
    if vote is not None and vote < 1:
        raise UserError(f"--vote {vote} must be at least 1.")
    target = _match_target(match, run_dirs, summaries) if match is not None else None
    sources = voting_sources(summaries, exclude=target.label if target else None)
    if target is not None and not sources:
        raise UserError(
            f"--match {match} needs a run of plain samples (temperature or greedy) among the RUN "
            "arguments to vote with.",
            "Add one, e.g. dps sample --method temperature --seeds 0-15.",
        )
    wanted = {s.label for s in summaries} if vote is not None else {s.label for s in sources}
    samples: dict[str, dict[str, list[Sample]]] = {}
    for run_dir, summary, run_grades in zip(run_dirs, summaries, grades, strict=True):
        if summary.label in wanted:
            if vote is not None:  # check before scoring: a bad --vote fails fast
                have = run_grades.group_by("question_id").len()["len"].min()
                check_seeds(summary.label, int(have) if have is not None else 0, vote)  # type: ignore[arg-type]
            logp = ensure_logp(run_dir, device)
            samples[summary.label] = run_samples(run_dir, summary.task, run_grades, logp)
    votes = tuple(
        run_votes(s.label, s.method_label, samples[s.label], vote) for s in summaries
    ) if vote is not None else ()  # fmt: skip
    matches = tuple(match_votes(target, s, samples[s.label]) for s in sources) if target else ()
    drawn = tuple(vote_curve(s, samples[s.label]) for s in sources) if curves else ()
    return VotingSection(votes=votes, matches=matches, curves=drawn)


def _match_target(match: Path, run_dirs: Sequence[Path], summaries: Sequence[RunSummary]) -> RunSummary:
    """The summary of the ``--match`` run, which must be one of the evaluated runs."""
    wanted = Path(match).resolve()
    for run_dir, summary in zip(run_dirs, summaries, strict=True):
        if Path(run_dir).resolve() == wanted:
            return summary
    raise UserError(
        f"--match {match} is not one of the RUN arguments.", "List it among the runs to evaluate too."
    )
