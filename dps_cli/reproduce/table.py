"""The `make reproduce` report: the paper-style table, the tau-sweep figure and reproduce.md.

Only formatting lives here; `dps_cli.reproduce.stages` computes every number and hands it
over as a `ReproduceReport`. The table puts our numbers beside the paper's MATH500 numbers, and
the markdown says plainly which model, task and scale produced ours.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_cli.controllers.card import chance_sentence
from dps_cli.runs.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from rich.table import Table

    from dps_cli.controllers.card import ControllerCard

NA = "n/a"
DPI = 150
#: Marks a DPS row whose controller is no better than chance at this scale.
CHANCE_MARK = "†"
MAJORITY_ROW = "Majority vote @ matched tokens"
BEST_OF_ROW = "Best-of-N @ matched tokens"
#: The DPS paper's MATH500 results with Qwen2.5-Math-7B: method -> (accuracy %, s / question).
PAPER_MATH500: Mapping[str, tuple[float, float]] = {
    "Fixed k=8": (69.7, 263.2),
    "DPS-GBDT": (68.7, 73.2),
    "DPS-MLP-H": (69.7, 104.2),
    "DPS-MLP-HQ": (70.7, 87.8),
}
EVIDENCE_COLUMNS = (
    "Controller", "held-out questions", "checkpoints", "ROC-AUC [95% CI]", "Brier [95% CI]",
    "train AUC", "vs chance",
)  # fmt: skip
TABLE_COLUMNS = (
    "Method",
    "Accuracy (%)",
    "95% CI",
    "Time (s / question)",
    "tokens / question",
    "mean k",
    "Paper accuracy (%)",
    "Paper time (s / question)",
)


@dataclass(frozen=True)
class ResultRow:
    """One method's held-out numbers (accuracy as a fraction; None where undefined)."""

    method: str
    run: str
    accuracy: float | None
    accuracy_lo: float | None
    accuracy_hi: float | None
    seconds_per_question: float | None
    mean_k: float | None
    tokens_per_question: float | None = None
    mark: str = ""  # CHANCE_MARK for a DPS row whose controller does not beat chance
    note: str = ""  # printed under the table (why the row is marked, which N was matched)

    @property
    def paper(self) -> tuple[float, float] | None:
        """The paper's (accuracy %, s / question) for this method, if it reports one."""
        return PAPER_MATH500.get(self.method)

    def cells(self) -> tuple[str, ...]:
        """The row as the strings of `TABLE_COLUMNS`."""
        paper = self.paper
        interval = (
            f"[{self.accuracy_lo * 100:.1f}, {self.accuracy_hi * 100:.1f}]"
            if self.accuracy_lo is not None and self.accuracy_hi is not None
            else NA
        )
        return (
            f"{self.method} {self.mark}" if self.mark else self.method,
            _fixed(None if self.accuracy is None else self.accuracy * 100, 1),
            interval,
            _fixed(self.seconds_per_question, 2),
            _fixed(self.tokens_per_question, 1),
            _fixed(self.mean_k, 2),
            NA if paper is None else f"{paper[0]:.1f}",
            NA if paper is None else f"{paper[1]:.1f}",
        )


@dataclass(frozen=True)
class ReproduceReport:
    """Everything reproduce.md shows."""

    model: str
    task: str
    profile: str
    scale_note: str
    train_questions: int
    test_questions: int
    seeds: tuple[int, ...]
    settings: Mapping[str, object]
    stage_seconds: Mapping[str, float]
    rows: Sequence[ResultRow]
    cards: Sequence[ControllerCard]
    passk_png: str
    tau_png: str
    run_dirs: Sequence[str] = field(default_factory=tuple)
    tokens_png: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The table as JSON-ready data (``dps reproduce --json``): every row, the scale, the times."""
        return {
            "model": self.model, "task": self.task, "profile": self.profile, "scale_note": self.scale_note,
            "train_questions": self.train_questions, "test_questions": self.test_questions,
            "seeds": list(self.seeds), "settings": dict(self.settings), "stage_seconds": dict(self.stage_seconds),
            "rows": [{**asdict(row), "paper": row.paper} for row in self.rows], "run_dirs": list(self.run_dirs),
        }  # fmt: skip


def table_notes(rows: Sequence[ResultRow]) -> list[str]:
    """The rows' notes, each once, in row order: why a row is marked, which N was matched."""
    notes: list[str] = []
    for row in rows:
        if row.note and row.note not in notes:
            notes.append(row.note)
    return notes


def results_table(rows: Sequence[ResultRow], title: str = "Held-out results") -> Table:
    """The paper-style table for the terminal."""
    from rich.table import Table

    notes = table_notes(rows)
    table = Table(title=title, caption="\n".join(notes) if notes else None, caption_justify="left")
    for i, name in enumerate(TABLE_COLUMNS):
        if i == 0:
            table.add_column(name, no_wrap=True, min_width=10)
        else:
            table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row.cells())
    return table


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; the first column left-aligned, the rest right."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [_md_row(header), _md_row(align)] + [_md_row(row) for row in rows]
    return "\n".join(lines)


def tau_sweep_rows(card: ControllerCard) -> list[tuple[str, ...]]:
    """The replayed sweep of one card as table cells, the recommended tau marked."""
    rows: list[tuple[str, ...]] = []
    for point in card.tau_sweep.points:
        mark = " (recommended)" if point.tau == card.recommended_tau else ""
        rows.append(
            (
                f"{point.tau:.1f}{mark}",
                f"{point.accuracy * 100:.1f}",
                f"{point.mean_final_k:.2f}",
                f"{point.relative_time:.2f}",
            )
        )
    return rows


def render_markdown(report: ReproduceReport) -> str:
    """The text of reproduce.md."""
    settings = ", ".join(f"{key} {value}" for key, value in report.settings.items())
    stages = [(name, f"{seconds:.1f}") for name, seconds in report.stage_seconds.items()]
    parts = [
        f"# DPS reproduction: {report.task}, profile {report.profile}",
        f"> {report.scale_note}",
        (
            f"- Model: `{report.model}`\n- Task: `{report.task}`\n- Profile: `{report.profile}`\n"
            f"- Questions: {report.train_questions} for training (fixed k = 2, 4, 6, 8), "
            f"{report.test_questions} held out for this table; seeds "
            f"{', '.join(str(s) for s in report.seeds)} ({len(report.seeds)} samples per question)\n"
            f"- Settings: {settings}"
        ),
        "## Held-out results",
        (
            "Accuracy is the mean over questions of the mean correctness over seeds (95% bootstrap "
            "interval over questions); time is wall seconds per question per sample; tokens / "
            "question counts every generated token of what answers a question (a power chain's "
            "rejected proposals included); mean k is the final number of MH proposals per block. "
            f"The rows \"{MAJORITY_ROW}\" and \"{BEST_OF_ROW}\" spend about the tokens of the "
            "fixed-k baseline on N plain samples at temperature 1/alpha: the most frequent "
            "answer (ties: the higher mean log p) and the sample with the highest mean per-token "
            "log p under the base model; their time and tokens sum the N samples. The paper "
            "columns are the DPS paper's MATH500 numbers with Qwen2.5-Math-7B."
        ),
        markdown_table(TABLE_COLUMNS, [row.cells() for row in report.rows]),
        *table_notes(report.rows),
        *(
            ["## Accuracy against tokens per question",
             "Each run is a point; majority vote and best-of-N over the temperature run's first N "
             "seeds are curves over N (error bars: 95% intervals over questions).",
             f"![accuracy against tokens]({report.tokens_png})"]
            if report.tokens_png else []
        ),  # fmt: skip
        "## Controllers' evidence",
        (
            "Held-out ROC-AUC and Brier score of each controller on its own held-out training "
            "questions, with 95% bootstrap intervals that resample questions (a question's rows "
            "are correlated), next to the AUC on its training rows."
        ),
        markdown_table(EVIDENCE_COLUMNS, [evidence_cells(card) for card in report.cards]),
        *[chance_sentence(card.name, card.metrics) for card in report.cards],
        "## pass@k on the held-out runs",
        f"![pass@k]({report.passk_png})",
        "## Tau sweep of each controller",
        (
            "Replayed on the controller's own held-out training questions (see the time model "
            "in its card): accuracy and time relative to fixed k=8 against the threshold tau."
        ),
        f"![tau sweep]({report.tau_png})",
    ]
    for card in report.cards:
        parts.append(
            f"### {card.name} ({card.kind}), recommended tau {_fixed(card.recommended_tau, 1)}"
        )
        parts.append(
            markdown_table(("tau", "accuracy (%)", "mean k", "time vs k=8"), tau_sweep_rows(card))
            if card.tau_sweep.points
            else f"No sweep: {card.tau_sweep.note or 'no held-out pairs'}"
        )
    parts += ["## Wall time per stage (s)", markdown_table(("stage", "seconds"), stages)]
    if report.run_dirs:
        parts += ["## Runs", "\n".join(f"- `{run}`" for run in report.run_dirs)]
    return "\n\n".join(parts) + "\n"


def write_markdown(report: ReproduceReport, path: Path) -> Path:
    """Write reproduce.md atomically."""
    return atomic_write_bytes(path, render_markdown(report).encode("utf-8"))


def plot_tau_sweep(cards: Sequence[ControllerCard], path: Path) -> Path:
    """Accuracy and time relative to fixed k=8 against tau, one line per controller (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    accuracy_axes, time_axes = figure.subplots(1, 2)
    for card in cards:
        taus = [point.tau for point in card.tau_sweep.points]
        accuracy_axes.plot(taus, [p.accuracy * 100 for p in card.tau_sweep.points], marker="o",
                           label=card.name)  # fmt: skip
        time_axes.plot(taus, [p.relative_time for p in card.tau_sweep.points], marker="o",
                       label=card.name)  # fmt: skip
    accuracy_axes.set_ylabel("accuracy (%)")
    time_axes.set_ylabel("time / time of fixed k=8")
    for axes in (accuracy_axes, time_axes):
        axes.set_xlabel("tau (escalate when 1 - p_enough > tau)")
        axes.grid(True, alpha=0.3)
        if cards:
            axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def evidence_cells(card: ControllerCard) -> tuple[str, ...]:
    """One controller's held-out metrics with intervals, as `EVIDENCE_COLUMNS` cells."""
    m = card.metrics
    return (
        card.name, str(m.questions), str(m.rows), _interval(m.roc_auc, m.roc_auc_lo, m.roc_auc_hi),
        _interval(m.brier, m.brier_lo, m.brier_hi), _float(m.train_roc_auc), m.verdict,
    )  # fmt: skip


def _interval(value: float, lo: float, hi: float) -> str:
    if math.isnan(value):
        return NA
    bounds = NA if math.isnan(lo) or math.isnan(hi) else f"[{lo:.3f}, {hi:.3f}]"
    return f"{_float(value)} {bounds}"


def _float(value: float) -> str:
    return NA if math.isnan(value) else f"{value:.3f}"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _fixed(value: float | None, digits: int) -> str:
    return NA if value is None else f"{value:.{digits}f}"
