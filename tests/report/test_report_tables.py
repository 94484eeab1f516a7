"""Report tables built from fixture stores, compared with golden text.

Regenerate the golden files after a deliberate format change with
``DPS_UPDATE_GOLDEN=1 python -m pytest tests/report/test_report_tables.py``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from dps_cli.pipeline.evaluate import evaluate_runs
from dps_cli.pipeline.passk import passk_table
from dps_cli.report.tables import (
    comparison_table,
    evaluation_notes,
    evaluation_table,
    passk_notes,
    passk_rich_table,
)
from tests.factories import boxed_rows, use_fake_task, write_run

GOLDEN = Path(__file__).parent / "golden"
BASELINE = {
    "arith-0001": [True, False, False, False],
    "arith-0002": [True, True, True, False],
    "arith-0003": [False, False, False, False],
    "arith-0004": [True, True, True, True],
}
DPS = {
    "arith-0001": [True, True, False, False],
    "arith-0002": [True, True, True, True],
    "arith-0003": [False, False, False, False],
    "arith-0004": [True, True, True],
}


def _render(*renderables: object) -> str:
    console = Console(file=io.StringIO(), width=180, record=True, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def _check_golden(name: str, text: str) -> None:
    # Trailing spaces are rich's padding; strip them so editors cannot break the comparison.
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    path = GOLDEN / name
    if os.environ.get("DPS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    use_fake_task(monkeypatch)
    base = boxed_rows(BASELINE, wall_time_s=263.2, tokens_generated=9000, final_k=8)
    dps = boxed_rows(
        DPS,
        wall_time_s=73.2,
        tokens_generated=2500,
        final_k=4,
        method="dps",
        controller="gbdt",
        tau=0.5,
        k_initial=2,
        proposals_accepted=16,
        logq_bound=0.0031,  # as from the vllm backend's top-K normalizer
    )
    return [write_run(tmp_path / "k8", base), write_run(tmp_path / "dps-gbdt", dps)]


def test_evaluation_tables_match_golden(runs: list[Path]) -> None:
    report = evaluate_runs(runs)
    text = _render(evaluation_table(report), comparison_table(report), *evaluation_notes(report))
    _check_golden("evaluate.txt", text)


def test_passk_table_matches_golden(runs: list[Path]) -> None:
    report = passk_table(runs)
    _check_golden("passk.txt", _render(passk_rich_table(report), *passk_notes(report)))
