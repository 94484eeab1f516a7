"""The ``mlp-h`` and ``mlp-hq`` controller kinds: a small torch MLP on standardized features.

``mlp-h`` sees the six scalars and the layer-L hidden state; ``mlp-hq`` also the question
embedding. Training is deterministic for a seed: weights are initialised and batches shuffled
from one explicit `torch.Generator`, and there is no dropout (whose masks would come from the
global generator). Classes are balanced with ``pos_weight``; the epoch with the lowest
validation loss is kept.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dps_cli.controllers.card import ControllerCard
from dps_cli.controllers.features import CheckpointFeatures, scalar_matrix, vector_matrix

if TYPE_CHECKING:
    from dps_cli.controllers.fitting import LabeledSet, TrainSettings

MODEL_FILE = "model.pt"
FORMAT_VERSION = 1
MIN_STD = 1e-6


@dataclass(frozen=True)
class InputLayout:
    """Which vectors follow the scalars in the input row, and their widths."""

    hidden_size: int | None
    question_embedding_size: int | None

    def matrix(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        """The raw (unstandardized) input rows, shape (n, 6 + H [+ H_q]), float32."""
        parts = [scalar_matrix(batch).astype(np.float32)]
        if self.hidden_size is not None:
            parts.append(vector_matrix(batch, "hidden", self.hidden_size))
        if self.question_embedding_size is not None:
            parts.append(vector_matrix(batch, "question_embedding", self.question_embedding_size))
        return np.concatenate(parts, axis=1)


def build_net(
    input_dim: int, hidden_units: Sequence[int], generator: torch.Generator | None
) -> torch.nn.Sequential:
    """Linear+ReLU layers ending in one logit; initialised from ``generator`` when given."""
    layers: list[torch.nn.Module] = []
    width = input_dim
    for units in hidden_units:
        layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
        width = units
    layers.append(torch.nn.Linear(width, 1))
    net = torch.nn.Sequential(*layers)
    if generator is not None:
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return net


def standardize(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """(raw - mean) / std as a float32 tensor, shape (n, d)."""
    return torch.from_numpy(((raw - mean) / std).astype(np.float32))


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.float32))


class MlpModel:
    """A fitted MLP with the standardization statistics of its training rows."""

    def __init__(
        self,
        net: torch.nn.Sequential,
        layout: InputLayout,
        mean: np.ndarray,
        std: np.ndarray,
        hidden_units: Sequence[int],
    ) -> None:
        self._net = net.eval()
        self._layout = layout
        self._mean = mean.astype(np.float32)
        self._std = std.astype(np.float32)
        self._hidden_units = tuple(hidden_units)
        self.hidden_size = layout.hidden_size
        self.question_embedding_size = layout.question_embedding_size

    def predict_p_enough(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        """sigmoid(logit) for each checkpoint, shape (n,)."""
        if not batch:
            return np.zeros(0, dtype=np.float64)
        x = standardize(self._layout.matrix(batch), self._mean, self._std)
        with torch.inference_mode():
            logits = self._net(x)[:, 0]  # (n,)
        return torch.sigmoid(logits).double().numpy()

    def save(self, directory: Path) -> None:
        """Write ``model.pt``: state_dict, standardization stats and the layout (tensors only)."""
        torch.save(
            {
                "format": FORMAT_VERSION,
                "state_dict": self._net.state_dict(),
                "mean": torch.from_numpy(self._mean),
                "std": torch.from_numpy(self._std),
                "hidden_units": list(self._hidden_units),
                "hidden_size": self._layout.hidden_size,
                "question_embedding_size": self._layout.question_embedding_size,
            },
            directory / MODEL_FILE,
        )


@dataclass(frozen=True)
class MlpKind:
    """Registry entry for ``mlp-h`` and ``mlp-hq``."""

    name: str
    uses_question_embedding: bool
    uses_hidden: bool = True
    model_file: str = MODEL_FILE

    def fit(self, train: LabeledSet, val: LabeledSet, settings: TrainSettings) -> MlpModel:
        """AdamW on class-balanced BCE; keep the epoch with the lowest validation loss."""
        layout = self._layout(train.features[0])
        raw_train = layout.matrix(train.features)
        mean = raw_train.mean(axis=0)
        std = np.maximum(raw_train.std(axis=0), MIN_STD)
        train_xy = (standardize(raw_train, mean, std), _labels(train.labels))
        val_xy = (
            (standardize(layout.matrix(val.features), mean, std), _labels(val.labels))
            if len(val)
            else train_xy
        )
        positives = float(train_xy[1].sum())
        loss_fn = torch.nn.BCEWithLogitsLoss(  # pos_weight = negatives / positives balances classes
            pos_weight=torch.tensor((len(train_xy[1]) - positives) / max(positives, 1.0))
        )
        generator = torch.Generator().manual_seed(settings.seed)
        net = build_net(raw_train.shape[1], settings.mlp_hidden_units, generator)
        with torch_threads(settings.thread_count):
            _train_loop(net, loss_fn, train_xy, val_xy, settings, generator)
        return MlpModel(net, layout, mean, std, settings.mlp_hidden_units)

    def load(self, directory: Path, card: ControllerCard) -> MlpModel:
        """Read ``model.pt`` (weights_only: no pickled code is executed)."""
        state: dict[str, Any] = torch.load(directory / card.model_file, weights_only=True)
        layout = InputLayout(state["hidden_size"], state["question_embedding_size"])
        mean = state["mean"].numpy()
        net = build_net(mean.shape[0], state["hidden_units"], None)
        net.load_state_dict(state["state_dict"])
        return MlpModel(net, layout, mean, state["std"].numpy(), state["hidden_units"])

    def _layout(self, example: CheckpointFeatures) -> InputLayout:
        """Input widths read off one training row (every row is checked later by `matrix`)."""
        if example.hidden is None:
            raise ValueError(f"{self.name} needs hidden states in every training row")
        embedding = None
        if self.uses_question_embedding:
            if example.question_embedding is None:
                raise ValueError(f"{self.name} needs question embeddings in every training row")
            embedding = int(np.asarray(example.question_embedding).size)
        return InputLayout(int(np.asarray(example.hidden).size), embedding)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Use ``count`` intra-op threads for the block, then restore the previous setting.

    Small matrices train faster on one thread than on several competing for a busy CPU.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train_loop(
    net: torch.nn.Sequential,
    loss_fn: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    generator: torch.Generator,
) -> None:
    """Mini-batch epochs; restore the weights of the best validation epoch (early stopping)."""
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=settings.mlp_learning_rate, weight_decay=settings.mlp_weight_decay
    )
    x, y = train
    best_loss, best_state, stale = math.inf, copy.deepcopy(net.state_dict()), 0
    for _epoch in range(settings.mlp_epochs):
        net.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            optimizer.zero_grad()
            loss_fn(net(x[idx])[:, 0], y[idx]).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(val[0])[:, 0], val[1]))
        if val_loss < best_loss - 1e-6:
            best_loss, best_state, stale = val_loss, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    net.load_state_dict(best_state)
    net.eval()


MLP_H = MlpKind(name="mlp-h", uses_question_embedding=False)
MLP_HQ = MlpKind(name="mlp-hq", uses_question_embedding=True)
