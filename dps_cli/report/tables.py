"""Rich tables for `dps evaluate` and `dps passk`, built from the pipeline's report objects.

Tables only format; every number is computed in `dps_cli.pipeline`. Accuracies are shown in
percent with their 95% interval; an ungradable run (AlpacaEval) shows "n/a".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from dps_cli.report.voting import MAJORITY, WEIGHTED_MAJORITY, VoteResult

if TYPE_CHECKING:
    from dps_cli.report.results import EvaluationReport, PasskReport, RunSummary

NA = "n/a"
#: How many excluded question ids a pass@k note lists before "and N more".
SHOWN_EXCLUDED = 5


def evaluation_table(report: EvaluationReport) -> Table:
    """One row per run: what ran, how well, and at what cost."""
    table = Table(title="Evaluation")
    for name in ("run", "task", "model", "method"):
        table.add_column(name)
    for name in ("questions", "samples", "accuracy [95% CI]", "s/question", "mean k"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("tokens/question", justify="right", no_wrap=True)
    table.add_column("acceptance", justify="right", no_wrap=True)
    table.add_column("log q bound", justify="right", no_wrap=True)
    for run in report.runs:
        table.add_row(
            run.label,
            run.task,
            run.model,
            run.method_label,
            str(run.questions),
            str(run.samples),
            accuracy_cell(run),
            _fixed(run.seconds_per_question, 2),
            _fixed(run.mean_final_k, 2),
            _fixed(run.tokens_per_question, 1),
            _percent(run.acceptance_rate),
            logq_bound_cell(run.logq_bound),
        )
    return table


def logq_bound_cell(bound: float | None) -> str:
    """"exact" for 0, the bound otherwise; n/a where there is none (`summarize_run`: non-MH runs,
    or chains stored before the bound was recorded)."""
    if bound is None:
        return NA
    return "exact" if bound == 0 else f"{bound:.2g}"


def comparison_table(report: EvaluationReport) -> Table | None:
    """The paper's form: Method | Accuracy | Time per question, plus Δacc and the time ratio."""
    if not report.comparisons:
        return None
    by_label = {run.label: run for run in report.runs}
    baseline = by_label[report.comparisons[0].baseline]
    table = Table(title=f"Against {baseline.label} (paired over shared questions)")
    table.add_column("method")
    for name in ("accuracy", "time per question", "tokens / question", "Δacc [95% CI]", "time ratio"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_row(
        baseline.method_label,
        _percent(baseline.accuracy),
        _seconds(baseline.seconds_per_question),
        _fixed(baseline.tokens_per_question, 1),
        "baseline",
        "1.00×",
    )
    for comparison in report.comparisons:
        run = by_label[comparison.run]
        delta = (
            f"{comparison.delta * 100:+.1f} "
            f"[{comparison.delta_lo * 100:+.1f}, {comparison.delta_hi * 100:+.1f}]"
        )
        ratio = f"{comparison.time_ratio:.2f}×" if comparison.time_ratio is not None else NA
        table.add_row(
            run.method_label,
            _percent(run.accuracy),
            _seconds(run.seconds_per_question),
            _fixed(run.tokens_per_question, 1),
            delta,
            ratio,
        )
    return table


def voting_table(report: EvaluationReport) -> Table | None:
    """maj@N and best-of-N rows (``--vote``), Power-SMC's vote over particles and the
    compute-matched baselines (``--match``)."""
    voting = report.voting
    particles = [(run.label, run.particle_vote) for run in report.runs if run.particle_vote is not None]
    if not voting.votes and not voting.matches and not particles:
        return None
    table = Table(title="Voting baselines (N samples per question)")
    table.add_column("run")
    table.add_column("method")
    for name in ("N", "accuracy [95% CI]", "tokens / question", "s/question"):
        table.add_column(name, justify="right", no_wrap=True)
    for votes in voting.votes:
        for result in (votes.majority, votes.best):
            table.add_row(votes.run, vote_label(result), str(result.n), vote_accuracy_cell(result),
                          _fixed(result.tokens_per_question, 1), _fixed(result.seconds_per_question, 2))  # fmt: skip
    for label, vote in particles:  # Power-SMC runs
        table.add_row(label, vote_label(vote), str(vote.n), vote_accuracy_cell(vote),
                      _fixed(vote.tokens_per_question, 1), _fixed(vote.seconds_per_question, 2))  # fmt: skip
    for match in voting.matches:
        for result in (match.majority, match.best):
            table.add_row(match.source, f"{vote_label(result)} @ tokens of {match.target}", str(result.n),
                          vote_accuracy_cell(result), _fixed(result.tokens_per_question, 1),
                          _fixed(result.seconds_per_question, 2))  # fmt: skip
    return table


def voting_notes(report: EvaluationReport) -> list[str]:
    """One sentence per ``--match``: which N it chose and the two token figures."""
    notes = []
    for match in report.voting.matches:
        note = (
            f"--match {match.target}: N = {match.n} sample{'' if match.n == 1 else 's'} of {match.source} "
            f"({match.source_method_label}) cost {match.vote_tokens:.1f} tokens / question, "
            f"the closest to {match.target}'s {match.target_tokens:.1f}."
        )
        if match.short_of_target:
            note += " That uses every stored seed; sample more seeds to match fully."
        notes.append(note)
    return notes


def vote_label(result: VoteResult) -> str:
    """The row label: maj@N, best-of-N ranked by the base model's mean log p, or SMC's vote."""
    if result.method == WEIGHTED_MAJORITY:
        return f"weighted maj over {result.n} particles"
    return f"maj@{result.n}" if result.method == MAJORITY else f"best-of-{result.n} (log p)"


def vote_accuracy_cell(result: VoteResult) -> str:
    """Accuracy with its interval, or n/a when nothing was gradable."""
    if result.accuracy is None or result.accuracy_lo is None or result.accuracy_hi is None:
        return NA
    return f"{result.accuracy * 100:.1f}% [{result.accuracy_lo * 100:.1f}, {result.accuracy_hi * 100:.1f}]"


def evaluation_notes(report: EvaluationReport) -> list[str]:
    """Lines under the tables: AlpacaEval exports and verdicts."""
    notes = []
    for run in report.runs:
        if run.alpaca is None:
            continue
        notes.append(f"{run.label}: AlpacaEval outputs in {run.alpaca.outputs_path}.")
        if run.alpaca.win_rate is not None:
            lc = run.alpaca.lc_win_rate
            lc_text = f", length-controlled {lc:.1f}%" if lc is not None else ""
            notes.append(f"{run.label}: win rate {run.alpaca.win_rate:.1f}%{lc_text}.")
        notes.append(f"{run.label}: {run.alpaca.note}")
        local = run.alpaca.local_judge
        if local is not None:
            notes.append(
                f"{run.label}: local judge {local.judge}: win rate {local.win_rate:.1f}% "
                f"[{local.win_rate_lo:.1f}, {local.win_rate_hi:.1f}] over {local.items} instructions "
                "(both orders averaged)."
            )
    return notes


def passk_rich_table(report: PasskReport) -> Table:
    """Rows k = 1 .. max k, one column per run; a cell notes questions left out at that k."""
    table = Table(title="pass@k", caption="unbiased estimator; (N q): mean over only N questions")
    table.add_column("k", justify="right")
    for run in report.runs:
        table.add_column(f"{run.label}\n{run.method_label}", justify="right")
    for k in range(1, report.max_k() + 1):
        cells = [str(k)]
        for run in report.runs:
            point = run.points[k - 1] if k <= len(run.points) else None
            if point is None:
                cells.append("—")
            elif point.excluded:
                cells.append(f"{point.value * 100:.1f}% ({point.questions} q)")
            else:
                cells.append(f"{point.value * 100:.1f}%")
        table.add_row(*cells)
    return table


def passk_notes(report: PasskReport) -> list[str]:
    """One line per (run, k) that left questions out, naming them."""
    notes = []
    for run in report.runs:
        for point in run.points:
            if not point.excluded:
                continue
            shown = ", ".join(point.excluded[:SHOWN_EXCLUDED])
            extra = len(point.excluded) - SHOWN_EXCLUDED
            more = f" and {extra} more" if extra > 0 else ""
            notes.append(
                f"{run.label}: pass@{point.k} leaves out {len(point.excluded)} of "
                f"{run.questions} questions with fewer than {point.k} samples: {shown}{more}."
            )
    return notes


def accuracy_cell(run: RunSummary) -> str:
    """The accuracy as "69.7% [65.6, 73.6]", or "n/a" for a run not graded locally."""
    if run.accuracy is None or run.accuracy_lo is None or run.accuracy_hi is None:
        return NA
    return f"{run.accuracy * 100:.1f}% [{run.accuracy_lo * 100:.1f}, {run.accuracy_hi * 100:.1f}]"


def _percent(value: float | None) -> str:
    return NA if value is None else f"{value * 100:.1f}%"


def _fixed(value: float | None, digits: int) -> str:
    return NA if value is None else f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    return NA if value is None else f"{value:.1f} s"
