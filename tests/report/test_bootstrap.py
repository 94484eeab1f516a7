"""Bootstrap intervals over questions: determinism, degenerate cases, paired difference sign."""

from __future__ import annotations

import numpy as np
import pytest

from dps_cli.report.metrics import bootstrap_ci, paired_difference


def test_same_seed_gives_same_interval() -> None:
    values = np.array([0.0, 0.25, 1.0, 1.0, 0.5, 0.75, 0.0, 1.0])
    first = bootstrap_ci(values, rng=np.random.default_rng(7))
    second = bootstrap_ci(values, rng=np.random.default_rng(7))
    assert first == second
    assert first[0] == pytest.approx(0.5625)
    assert first[1] < first[0] < first[2]


def test_different_seeds_change_only_the_interval() -> None:
    values = np.linspace(0, 1, 30)
    a = bootstrap_ci(values, rng=np.random.default_rng(0))
    b = bootstrap_ci(values, rng=np.random.default_rng(1))
    assert a[0] == b[0]
    assert (a[1], a[2]) != (b[1], b[2])


def test_constant_values_give_zero_width_interval() -> None:
    assert bootstrap_ci(np.full(12, 0.75), rng=np.random.default_rng(0)) == (0.75, 0.75, 0.75)
    assert bootstrap_ci(np.array([1.0]), rng=np.random.default_rng(0)) == (1.0, 1.0, 1.0)


def test_interval_covers_the_mean_of_bernoulli_questions() -> None:
    values = (np.random.default_rng(3).random(400) < 0.7).astype(float)
    mean, lo, hi = bootstrap_ci(values, n_boot=1000, rng=np.random.default_rng(0))
    # Normal approximation half-width at 95%: 1.96 * sqrt(p(1-p)/n) ~ 0.045.
    assert lo < mean < hi
    assert 0.07 < hi - lo < 0.11


def test_narrower_level_gives_narrower_interval() -> None:
    values = np.linspace(0, 1, 50)
    _, lo95, hi95 = bootstrap_ci(values, level=0.95, rng=np.random.default_rng(0))
    _, lo50, hi50 = bootstrap_ci(values, level=0.50, rng=np.random.default_rng(0))
    assert hi50 - lo50 < hi95 - lo95


def test_empty_values_raise() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.array([]), rng=np.random.default_rng(0))


def test_paired_difference_is_b_minus_a() -> None:
    a = np.array([0.0, 0.0, 0.5, 1.0, 0.0, 0.25, 0.0, 0.5])
    b = a + 0.25
    mean, lo, hi = paired_difference(a, b, rng=np.random.default_rng(0))
    # Every question improves by exactly 0.25, so the paired interval has no width.
    assert (mean, lo, hi) == pytest.approx((0.25, 0.25, 0.25))
    worse = paired_difference(b, a, rng=np.random.default_rng(0))
    assert worse == pytest.approx((-0.25, -0.25, -0.25))


def test_paired_difference_interval_is_tighter_than_independent() -> None:
    rng = np.random.default_rng(5)
    a = rng.random(200)
    b = np.clip(a + rng.normal(0.05, 0.02, 200), 0, 1)
    mean, lo, hi = paired_difference(a, b, rng=np.random.default_rng(0))
    _, alo, ahi = bootstrap_ci(a, rng=np.random.default_rng(0))
    assert lo > 0
    assert hi - lo < (ahi - alo) / 4


def test_paired_difference_needs_aligned_arrays() -> None:
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(np.zeros(3), np.zeros(4), rng=np.random.default_rng(0))
