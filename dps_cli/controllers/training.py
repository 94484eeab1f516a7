"""Fit a controller kind on a collect table and measure it on held-out questions.

Splits are by question, never by row (DESIGN §1): a question's rows, all seeds, all k and all
checkpoints, land in exactly one of train, validation and test. Validation drives early stopping;
the test questions give the metrics and the tau replay and are never seen in training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dps_cli.config import K_SCHEDULE
from dps_cli.controllers.base import FittedModel
from dps_cli.controllers.card import HeldOutMetrics, TauSweep
from dps_cli.controllers.evidence import with_evidence
from dps_cli.controllers.fitting import LabeledSet, TrainSettings
from dps_cli.controllers.kinds import CONTROLLER_KINDS
from dps_cli.controllers.replay import tau_sweep
from dps_cli.controllers.table import checkpoint_features, checkpoint_rows
from dps_cli.errors import UserError

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

MIN_QUESTIONS = 3


@dataclass(frozen=True)
class QuestionSplit:
    """Disjoint sets of question ids."""

    train: frozenset[str]
    val: frozenset[str]
    test: frozenset[str]


@dataclass(frozen=True)
class TrainingResult:
    """A fitted model and how it did on the test questions."""

    model: FittedModel
    metrics: HeldOutMetrics
    sweep: TauSweep
    split: QuestionSplit


def split_by_question(question_ids: Sequence[str], settings: TrainSettings) -> QuestionSplit:
    """Shuffle the distinct question ids with the seed and cut test, then validation, then train."""
    unique = sorted(set(question_ids))
    if len(unique) < MIN_QUESTIONS:
        raise UserError(
            f"The table holds {len(unique)} question(s); training needs at least {MIN_QUESTIONS} "
            "so that train, validation and test questions differ.",
            "Collect runs over more questions.",
        )
    rng = np.random.default_rng(settings.seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    n_test = min(len(unique) - 2, max(1, round(len(unique) * settings.test_fraction)))
    rest = len(unique) - n_test
    n_val = min(rest - 1, max(1, round(rest * settings.val_fraction)))
    return QuestionSplit(
        test=frozenset(order[:n_test]),
        val=frozenset(order[n_test : n_test + n_val]),
        train=frozenset(order[n_test + n_val :]),
    )


def labeled_set(frame: pl.DataFrame, questions: frozenset[str]) -> LabeledSet:
    """The checkpoint rows of ``questions`` below the top k, as features and ``enough`` labels.

    Rows at k=8 are left out: their label is always true (enough(8) = correct(8) or not
    correct(8)) and the policy never escalates from k=8, so they would only inflate the metrics.
    """
    import polars as pl

    rows = checkpoint_rows(frame).filter(
        pl.col("question_id").is_in(list(questions)) & (pl.col("k") < K_SCHEDULE.max)
    )
    return LabeledSet(
        features=checkpoint_features(rows),
        labels=rows["enough"].cast(pl.Int64).to_numpy(),
        question_ids=rows["question_id"].to_numpy(),
    )


def held_out_metrics(labels: np.ndarray, p_enough: np.ndarray, questions: int) -> HeldOutMetrics:
    """ROC-AUC, Brier score and log-loss; AUC is NaN (with a note) when one class is absent."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    if len(labels) == 0:
        return HeldOutMetrics(math.nan, math.nan, math.nan, 0, questions, 0, "no held-out rows")
    note = ""
    if len(np.unique(labels)) < 2:
        auc = math.nan
        note = "ROC-AUC undefined: every held-out label is the same class."
    else:
        auc = float(roc_auc_score(labels, p_enough))
    return HeldOutMetrics(
        roc_auc=auc,
        brier=float(brier_score_loss(labels, p_enough)),
        log_loss=float(log_loss(labels, np.clip(p_enough, 1e-7, 1 - 1e-7), labels=[0, 1])),
        rows=int(len(labels)),
        questions=questions,
        positives=int(labels.sum()),
        note=note,
    )


def fit_and_evaluate(
    kind_name: str, frame: pl.DataFrame, settings: TrainSettings
) -> TrainingResult:
    """Split ``frame`` by question, fit ``kind_name``, report on the test questions."""
    import polars as pl

    kind = CONTROLLER_KINDS.get(kind_name)
    _require_vectors(kind_name, frame, kind.uses_hidden, kind.uses_question_embedding)
    frame = usable_rows(frame)
    split = split_by_question(frame["question_id"].to_list(), settings)
    train = labeled_set(frame, split.train)
    val = labeled_set(frame, split.val)
    test = labeled_set(frame, split.test)
    if len(train) == 0:
        raise UserError(
            "The training questions have no checkpoints below k=8 to learn from.",
            "Collect k=2, 4 and 6 runs sampled with checkpoints that their chains reach.",
        )
    if len(np.unique(train.labels)) < 2:
        from dps_cli.controllers.constant import ConstantModel

        only = "enough" if train.labels[0] == 1 else "not enough"
        logger.warning("every training label is '%s': saving a constant controller", only)
        constant = ConstantModel(float(train.labels[0]))
        metrics = held_out_metrics(test.labels, constant.predict_p_enough(test.features), len(split.test))
        metrics = with_evidence(metrics, constant, train, test, settings.seed)
        sweep = tau_sweep(constant, frame.filter(pl.col("question_id").is_in(list(split.test))))
        return TrainingResult(model=constant, metrics=metrics, sweep=sweep, split=split)
    logger.info(
        "training %s on %d rows (%d questions), validating on %d, testing on %d",
        kind_name,
        len(train),
        len(split.train),
        len(val),
        len(test),
    )
    model = kind.fit(train, val, settings)
    metrics = held_out_metrics(test.labels, model.predict_p_enough(test.features), len(split.test))
    metrics = with_evidence(metrics, model, train, test, settings.seed)
    sweep = tau_sweep(model, frame.filter(pl.col("question_id").is_in(list(split.test))))
    return TrainingResult(model=model, metrics=metrics, sweep=sweep, split=split)


def _require_vectors(kind_name: str, frame: pl.DataFrame, hidden: bool, question: bool) -> None:
    """Refuse kinds whose inputs the table lacks, naming the flag that records them."""
    rows = checkpoint_rows(frame)
    for needed, column in ((hidden, "hidden"), (question, "question_embedding")):
        if needed and rows[column].null_count() > 0:
            raise UserError(
                f"Controller kind {kind_name!r} needs {column.replace('_', ' ')} vectors, but "
                f"{rows[column].null_count()} of the table's {rows.height} checkpoint rows "
                "have none.",
                "Sample the fixed-k runs with --hidden-layer set (not 'none'), or train 'gbdt'.",
            )


def usable_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Drop checkpoint rows whose scalar features are not all finite; refuse if none is left.

    A NaN or infinite feature would poison an MLP and says the row was not measured; rows
    without a checkpoint (kept for the tau replay) stay.
    """
    import polars as pl

    from dps_cli.controllers.features import SCALAR_FEATURES

    finite = pl.all_horizontal(pl.col(name).cast(pl.Float64).is_finite().fill_null(False) for name in SCALAR_FEATURES)
    checkpoints = pl.col("checkpoint_block").is_not_null()
    usable = frame.filter(checkpoints & finite).height
    total = frame.filter(checkpoints).height
    if total and not usable:
        broken = [name for name in SCALAR_FEATURES
                  if not frame.filter(checkpoints)[name].cast(pl.Float64).is_finite().fill_null(False).any()]  # fmt: skip
        raise UserError(
            f"The training table has no usable features: no checkpoint row has finite values in "
            f"every feature column ({', '.join(broken) or ', '.join(SCALAR_FEATURES)} never finite).",
            "Rebuild the table with 'dps collect' from runs sampled with checkpoints.",
        )
    if usable < total:
        logger.warning("dropping %d of %d checkpoint rows whose features are NaN or infinite",
                       total - usable, total)  # fmt: skip
    return frame.filter(~checkpoints | finite)
