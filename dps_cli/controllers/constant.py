"""The controller to save when every training label agrees: a constant p_enough.

If raising k never changed an answer on the training questions (say a small model gets every
MATH500 problem wrong at every k), all labels read "enough" and the best controller says so
always: DPS then stays at k=2. Saving that constant keeps the pipeline going and is honest: the
card's metrics show there was nothing to learn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dps_cli.controllers.features import CheckpointFeatures

CONSTANT_FILE = "constant.json"


@dataclass
class ConstantModel:
    """Predicts the training labels' only value for every checkpoint."""

    p_enough: float
    hidden_size: int | None = None
    question_embedding_size: int | None = None

    def predict_p_enough(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        return np.full(len(batch), self.p_enough, dtype=np.float64)

    def save(self, directory: Path) -> None:
        (directory / CONSTANT_FILE).write_text(json.dumps({"p_enough": self.p_enough}) + "\n")


def load_constant(directory: Path) -> ConstantModel | None:
    """The constant model saved in ``directory``, or None if it holds a trained one."""
    path = directory / CONSTANT_FILE
    if not path.is_file():
        return None
    return ConstantModel(float(json.loads(path.read_text())["p_enough"]))
