"""Figures: pass@k curves and accuracy against tokens per question, written as PNG atomically.

Uses matplotlib's object API on an Agg canvas (no pyplot, so no global figure state and no
display needed).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from dps_cli.runs.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from dps_cli.report.results import EvaluationReport, PasskReport
    from dps_cli.report.voting import VoteResult

DPI = 150
#: Horizontal offset factor between a run's maj@N and best-of-N curves (log axis).
DODGE = 1.02


def plot_passk(report: PasskReport, path: Path) -> Path:
    """Draw pass@k against k for every run of ``report`` and save it as a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for run in report.runs:
        ks = [point.k for point in run.points]
        values = [point.value * 100 for point in run.points]
        axes.plot(ks, values, marker="o", label=f"{run.label} ({run.method_label})")
    axes.set_xlabel("k (samples)")
    axes.set_ylabel("pass@k (%)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def plot_accuracy_tokens(report: EvaluationReport, path: Path, title: str | None = None) -> Path:
    """Accuracy against tokens / question: each run a point, voting baselines a curve over N.

    Error bars are the 95% bootstrap intervals over questions. The x axis is logarithmic: power
    sampling spends many times the tokens of one plain sample. The maj@N and best-of-N curves of
    a run share their x values; they are drawn 2% apart so that both sets of bars stay visible.
    A Power-SMC run's point is its drawn particle; a hollow diamond 2% to its right is its
    weighted vote over particles, which costs the same tokens.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for curve in report.voting.curves:
        _vote_line(axes, curve.majority, f"maj@N, {curve.run}", "-", "o", 1 / DODGE)
        _vote_line(axes, curve.best, f"best-of-N (log p), {curve.run}", "--", "s", DODGE)
    for run in report.runs:
        if run.accuracy is None or run.tokens_per_question is None:
            continue
        lo = run.accuracy if run.accuracy_lo is None else run.accuracy_lo
        hi = run.accuracy if run.accuracy_hi is None else run.accuracy_hi
        axes.errorbar([run.tokens_per_question], [run.accuracy * 100],
                      yerr=[[100 * (run.accuracy - lo)], [100 * (hi - run.accuracy)]],
                      fmt="D", markersize=7, capsize=4, label=f"{run.label} ({run.method_label})")  # fmt: skip
        vote = run.particle_vote  # Power-SMC: its weighted vote over particles, at the same tokens
        if vote is not None and vote.accuracy is not None:
            axes.plot([run.tokens_per_question * DODGE], [vote.accuracy * 100], marker="D", markersize=7,
                      fillstyle="none", linestyle="none", label=f"{run.label}, weighted vote over particles")
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(LogFormatter())
    axes.xaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
    axes.set_xlabel("tokens generated per question (log scale)")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(-3, 103)  # the whole scale, so that a flat or tiny difference looks like one
    if title:
        axes.set_title(title, fontsize="medium")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best", fontsize="x-small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def _vote_line(
    axes: Axes, results: tuple[VoteResult, ...], label: str, style: str, marker: str, dodge: float
) -> None:
    """One voting baseline over N, with interval error bars and each point labelled N."""
    points = [r for r in results if r.accuracy is not None]
    if not points:
        return
    xs = [r.tokens_per_question * dodge for r in points]
    ys = [100 * (r.accuracy or 0.0) for r in points]
    low = [100 * ((r.accuracy or 0.0) - (r.accuracy_lo or 0.0)) for r in points]
    high = [100 * ((r.accuracy_hi or 0.0) - (r.accuracy or 0.0)) for r in points]
    bars = axes.errorbar(xs, ys, yerr=[low, high], linestyle=style, marker=marker, markersize=4,
                         capsize=2, elinewidth=1, alpha=0.75, label=label)  # fmt: skip
    color = bars.lines[0].get_color()
    for r, x, y in zip(points, xs, ys, strict=True):
        axes.annotate(str(r.n), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                      color=color)  # fmt: skip
