"""The controller protocol the DPS driver calls, and the kind protocol that trains and loads one.

The driver calls `Controller.predict_p_enough` once per engine step with every chain that just
finished a checkpoint block, so implementations hold their model in memory and predict on a
small matrix without reloading anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dps_cli.controllers.card import ControllerCard
from dps_cli.controllers.features import CheckpointFeatures

if TYPE_CHECKING:
    from dps_cli.controllers.fitting import LabeledSet, TrainSettings


class PEnoughModel(Protocol):
    """Anything that maps checkpoint features to P(the current k is enough)."""

    def predict_p_enough(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        """Probabilities in [0, 1], shape (len(batch),), float64."""
        ...


class FittedModel(PEnoughModel, Protocol):
    """A freshly trained model that can write its weights into an artifact directory."""

    hidden_size: int | None
    question_embedding_size: int | None

    def save(self, directory: Path) -> None:
        """Write the model file(s) into ``directory`` (which already exists)."""
        ...


class Controller(PEnoughModel, Protocol):
    """A trained controller with its card: what `artifacts.load_controller` returns."""

    @property
    def card(self) -> ControllerCard:
        """What the controller was trained on and how it did (see `card.ControllerCard`)."""
        ...


class ControllerKind(Protocol):
    """One entry of `kinds.CONTROLLER_KINDS`: how to train and load one kind of controller."""

    name: str
    uses_hidden: bool
    uses_question_embedding: bool
    model_file: str

    def fit(self, train: LabeledSet, val: LabeledSet, settings: TrainSettings) -> FittedModel:
        """Train on ``train``, early-stopping on ``val``'s loss."""
        ...

    def load(self, directory: Path, card: ControllerCard) -> PEnoughModel:
        """Read the model file written by `FittedModel.save`."""
        ...


@dataclass(frozen=True)
class LoadedController:
    """A model together with its card; satisfies `Controller`."""

    card: ControllerCard
    model: PEnoughModel

    def predict_p_enough(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        """P(the current k is enough) for each checkpoint in ``batch``, shape (n,)."""
        if not batch:
            return np.zeros(0, dtype=np.float64)
        return self.model.predict_p_enough(batch)
