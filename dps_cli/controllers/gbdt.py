"""The ``gbdt`` controller kind: a CatBoost classifier on the six scalar checkpoint features.

This is the only module that imports catboost. Training is seeded (``random_seed``), uses few
threads, weights classes to balance them, and keeps the iteration with the lowest validation
log-loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps_cli.controllers.card import ControllerCard
from dps_cli.controllers.features import CheckpointFeatures, scalar_matrix

if TYPE_CHECKING:
    from dps_cli.controllers.fitting import LabeledSet, TrainSettings

MODEL_FILE = "model.cbm"
PATIENCE_SCALE = 10  # boosting rounds are cheap and noisy: wait 10x the epoch patience


class GbdtModel:
    """A fitted CatBoost classifier; predicts P(enough) from the scalar features."""

    hidden_size: int | None = None
    question_embedding_size: int | None = None

    def __init__(self, booster: Any) -> None:
        self._booster = booster

    def predict_p_enough(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        """P(class 1 = enough) for each checkpoint, shape (n,)."""
        if not batch:
            return np.zeros(0, dtype=np.float64)
        proba = self._booster.predict_proba(scalar_matrix(batch))  # (n, 2)
        return np.asarray(proba[:, 1], dtype=np.float64)

    def save(self, directory: Path) -> None:
        """Write ``model.cbm`` (CatBoost's binary format)."""
        self._booster.save_model(str(directory / MODEL_FILE), format="cbm")


@dataclass(frozen=True)
class GbdtKind:
    """Registry entry for ``gbdt``."""

    name: str = "gbdt"
    uses_hidden: bool = False
    uses_question_embedding: bool = False
    model_file: str = MODEL_FILE

    def fit(self, train: LabeledSet, val: LabeledSet, settings: TrainSettings) -> GbdtModel:
        """Boost on ``train`` with early stopping on ``val`` (when it has rows)."""
        from catboost import CatBoostClassifier

        booster = CatBoostClassifier(
            iterations=settings.gbdt_iterations,
            depth=settings.gbdt_depth,
            learning_rate=settings.gbdt_learning_rate,
            loss_function="Logloss",
            auto_class_weights="Balanced",
            random_seed=settings.seed,
            thread_count=settings.thread_count,
            allow_writing_files=False,
            verbose=False,
        )
        x_train = scalar_matrix(train.features)
        if len(val):
            booster.fit(
                x_train,
                train.labels,
                eval_set=(scalar_matrix(val.features), val.labels),
                early_stopping_rounds=settings.patience * PATIENCE_SCALE,
                use_best_model=True,
            )
        else:
            booster.fit(x_train, train.labels)
        return GbdtModel(booster)

    def load(self, directory: Path, card: ControllerCard) -> GbdtModel:
        """Read ``model.cbm``."""
        from catboost import CatBoostClassifier

        booster = CatBoostClassifier(thread_count=2)
        booster.load_model(str(directory / card.model_file), format="cbm")
        return GbdtModel(booster)


GBDT = GbdtKind()
