"""What a controller kind's ``fit`` receives: labelled checkpoints and the training settings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dps_cli.controllers.features import CheckpointFeatures
from dps_cli.errors import UserError


@dataclass(frozen=True)
class TrainSettings:
    """How to split and fit; the defaults are the ones `dps train-controller` uses.

    ``patience`` is counted in boosting rounds for gbdt (scaled x10) and in epochs for the MLPs.
    """

    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    gbdt_iterations: int = 1000
    gbdt_depth: int = 4
    gbdt_learning_rate: float = 0.05
    mlp_epochs: int = 200
    mlp_hidden_units: tuple[int, ...] = (64, 32)
    mlp_learning_rate: float = 1e-3
    mlp_weight_decay: float = 1e-4
    batch_size: int = 256
    patience: int = 10
    thread_count: int = 1

    def __post_init__(self) -> None:
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise UserError(f"{name}={value} must lie strictly between 0 and 1.")
        for name in ("gbdt_iterations", "mlp_epochs", "batch_size", "patience", "thread_count"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be at least 1.")


@dataclass(frozen=True)
class LabeledSet:
    """Checkpoint features with their labels (1: the current k is enough)."""

    features: list[CheckpointFeatures]
    labels: np.ndarray  # (n,) int64 in {0, 1}
    question_ids: np.ndarray  # (n,) str, for grouping

    def __len__(self) -> int:
        return len(self.features)
