"""Figures: pass@k curves, one line per run, written as PNG atomically.

Uses matplotlib's object API on an Agg canvas (no pyplot, so no global figure state and no
display needed).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from dps_cli.runs.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from dps_cli.pipeline.passk import PasskReport

DPI = 150


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
