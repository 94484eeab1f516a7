"""pass@k estimator against exact fractions kept as data (tests/report/passk_cases.json)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from dps_cli.report.metrics import pass_at_k

CASES = json.loads((Path(__file__).parent / "passk_cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_pass_at_k_matches_exact_fraction(case: dict[str, object]) -> None:
    expected = float(Fraction(str(case["expected"])))
    got = pass_at_k(int(str(case["n"])), int(str(case["c"])), int(str(case["k"])))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_edge_cases_are_exact() -> None:
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(5, 1, 5) == 1.0


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (4, 1, 5, "k <= n"),
        (4, 5, 1, "0 <= c <= n"),
        (4, -1, 1, "0 <= c <= n"),
        (0, 0, 1, "n >= 1"),
        (4, 1, 0, "k >= 1"),
    ],
)
def test_invalid_arguments_raise(n: int, c: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)
