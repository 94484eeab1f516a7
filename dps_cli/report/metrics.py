"""Accuracy metrics: the unbiased pass@k estimator and bootstrap confidence intervals.

Intervals resample *questions*, not samples: seeds of one question are correlated, so a
question's value is its mean correctness over its seeds and the question is the unit of
resampling. Every function takes an explicit `numpy.random.Generator`, so a fixed seed gives
the same interval on every run.
"""

from __future__ import annotations

import numpy as np

DEFAULT_N_BOOT = 2000
DEFAULT_LEVEL = 0.95
# Resamples drawn per vectorised chunk: bounds memory at _CHUNK x n_questions indices.
_CHUNK = 256


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al., 2021).

    pass@k = 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which
    avoids the huge binomials of the direct form.
    """
    if n < 1 or k < 1:
        raise ValueError(f"pass_at_k needs n >= 1 and k >= 1 (got n={n}, k={k})")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n (got c={c}, n={n})")
    if k > n:
        raise ValueError(f"pass_at_k needs k <= n (got k={k}, n={n})")
    if n - c < k:
        return 1.0
    product = float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))
    return 1.0 - product


def bootstrap_ci(
    per_question_values: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    *,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Mean of per-question values with a percentile-bootstrap interval over questions.

    Returns (mean, lo, hi). One question gives a zero-width interval at its value.
    """
    values = np.asarray(per_question_values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D array of per-question values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    means = _resampled_means(values, n_boot, rng)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(values.mean()), float(lo), float(hi)


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    *,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Mean of (b - a) over shared questions with a paired bootstrap interval.

    ``a[i]`` and ``b[i]`` must be the same question's values under two methods. Resampling the
    question pairs (rather than each method separately) keeps their correlation, which makes
    the interval of the difference much tighter than two independent intervals suggest.
    """
    a_values = np.asarray(a, dtype=np.float64)
    b_values = np.asarray(b, dtype=np.float64)
    if a_values.shape != b_values.shape:
        raise ValueError(
            f"paired_difference needs aligned arrays (got {a_values.shape} and {b_values.shape})"
        )
    return bootstrap_ci(b_values - a_values, n_boot, level, rng=rng)


def _resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``."""
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _CHUNK):
        stop = min(start + _CHUNK, n_boot)
        index = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[index].mean(axis=1)
    return means
