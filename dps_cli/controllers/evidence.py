"""Whether a controller beats chance: bootstrap intervals of its held-out metrics over questions.

The rows of one question (its seeds, k values and checkpoints) share the question's difficulty,
so they are not independent draws: a held-out set of 6 questions is 6 units, however many rows it
has. The intervals therefore resample *questions* with replacement (a grouped bootstrap) and
recompute ROC-AUC and the Brier score on each resample, as weighted statistics where a row weighs
as often as its question was drawn. A resample with only one class has no AUC and is skipped; the
interval is the percentile interval of the rest. It is reported as undefined (NaN) when fewer
than 2 questions are held out, when one class is absent, or when most resamples are one-class.

ROC-AUC is computed as the Mann-Whitney statistic with ties counted one half, so it equals
`sklearn.metrics.roc_auc_score` on the unweighted data.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from dps_cli.controllers.card import HeldOutMetrics

if TYPE_CHECKING:
    from dps_cli.controllers.base import PEnoughModel
    from dps_cli.controllers.fitting import LabeledSet

N_BOOT = 2000
LEVEL = 0.95
#: Below this share of two-class resamples the AUC interval is reported as undefined.
MIN_DEFINED_SHARE = 0.5


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(tie), rows weighted; NaN if one class."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    levels, index = np.unique(s, return_inverse=True)
    positive = np.bincount(index, weights=w * (y == 1), minlength=len(levels))
    negative = np.bincount(index, weights=w * (y == 0), minlength=len(levels))
    total_pos, total_neg = positive.sum(), negative.sum()
    if total_pos <= 0 or total_neg <= 0:
        return math.nan
    below = np.cumsum(negative) - negative  # negative weight strictly below each level
    return float(np.sum(positive * (below + 0.5 * negative)) / (total_pos * total_neg))


def grouped_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
) -> tuple[float, float, float, float]:
    """(AUC lo, AUC hi, Brier lo, Brier hi): percentile intervals resampling ``groups``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    names, group_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    nan4 = (math.nan, math.nan, math.nan, math.nan)
    if len(names) < 2 or len(y) == 0:
        return nan4
    squared = (p - y) ** 2
    aucs, briers = [], []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names))
        weights = counts[group_index].astype(np.float64)
        briers.append(float(np.sum(weights * squared) / weights.sum()) if weights.sum() else math.nan)
        aucs.append(weighted_auc(y, p, weights))
    tail = (1.0 - level) / 2.0
    brier_values = np.array([b for b in briers if not math.isnan(b)])
    brier_lo, brier_hi = np.quantile(brier_values, [tail, 1.0 - tail])
    auc_values = np.array([a for a in aucs if not math.isnan(a)])
    if len(auc_values) < MIN_DEFINED_SHARE * n_boot:
        return math.nan, math.nan, float(brier_lo), float(brier_hi)
    auc_lo, auc_hi = np.quantile(auc_values, [tail, 1.0 - tail])
    return float(auc_lo), float(auc_hi), float(brier_lo), float(brier_hi)


def with_evidence(
    metrics: HeldOutMetrics,
    model: PEnoughModel,
    train: LabeledSet,
    test: LabeledSet,
    seed: int = 0,
) -> HeldOutMetrics:
    """``metrics`` with the grouped intervals of the held-out AUC and Brier and the training AUC."""
    train_auc = (
        weighted_auc(train.labels, model.predict_p_enough(train.features)) if len(train) else math.nan
    )
    if len(test) == 0:
        return replace(metrics, train_roc_auc=train_auc)
    auc_lo, auc_hi, brier_lo, brier_hi = grouped_intervals(
        test.labels, model.predict_p_enough(test.features), test.question_ids,
        np.random.default_rng(seed),
    )  # fmt: skip
    return replace(
        metrics, roc_auc_lo=auc_lo, roc_auc_hi=auc_hi, brier_lo=brier_lo, brier_hi=brier_hi,
        train_roc_auc=train_auc,
    )  # fmt: skip
