"""What a controller sees at a checkpoint, and how a batch of checkpoints becomes matrices.

The six scalar features are defined in DESIGN §1 (perplexity, entropy and self-confidence over
the current trajectory, MH acceptance ratio, seconds spent on the question, the budget k in
force). ``hidden`` is the layer-L hidden state averaged over finished blocks and trajectories;
``question_embedding`` is the same layer averaged over the prompt tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SCALAR_FEATURES: tuple[str, ...] = (
    "mcmc_perplexity",
    "mcmc_entropy",
    "mcmc_self_confidence",
    "acceptance_ratio",
    "question_time_sec",
    "current_k",
)


@dataclass(frozen=True)
class CheckpointFeatures:
    """The inputs of one controller call for one chain at one checkpoint.

    Attributes:
        scalars: every name in `SCALAR_FEATURES` mapped to its value (extra keys are ignored).
        hidden: layer-L hidden state, shape (H,), or None when the run records none. Anything
            ``np.asarray`` turns into floats on the CPU (a CUDA tensor must be moved first).
        question_embedding: layer-L prompt embedding, shape (H,), or None.

    """

    scalars: Mapping[str, float]
    hidden: np.ndarray | None = None
    question_embedding: np.ndarray | None = None


def scalar_matrix(batch: Sequence[CheckpointFeatures]) -> np.ndarray:
    """The scalar features in `SCALAR_FEATURES` order, shape (n, 6), float64.

    A missing scalar is a bug in the caller (the driver always computes all six), so it raises.
    """
    out = np.empty((len(batch), len(SCALAR_FEATURES)), dtype=np.float64)
    for i, item in enumerate(batch):
        missing = [name for name in SCALAR_FEATURES if name not in item.scalars]
        if missing:
            raise ValueError(f"checkpoint features lack scalar(s) {', '.join(missing)}")
        out[i] = [float(item.scalars[name]) for name in SCALAR_FEATURES]
    return out


def vector_matrix(batch: Sequence[CheckpointFeatures], field: str, width: int) -> np.ndarray:
    """Stack ``hidden`` or ``question_embedding`` of every item, shape (n, width), float32.

    Raises ValueError naming the field when a vector is absent or has another width: a trained
    controller must never silently see zeros or truncated states.
    """
    out = np.empty((len(batch), width), dtype=np.float32)
    for i, item in enumerate(batch):
        vector = getattr(item, field)
        if vector is None:
            raise ValueError(f"checkpoint {i} has no {field}; this controller needs it")
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != width:
            raise ValueError(
                f"checkpoint {i} has {field} of width {array.shape[0]}, expected {width}"
            )
        out[i] = array
    return out


def feature_names(hidden_size: int | None, embedding_size: int | None) -> tuple[str, ...]:
    """A controller's inputs in order; vectors appear as one ``name[0:width]`` entry each."""
    names = list(SCALAR_FEATURES)
    if hidden_size is not None:
        names.append(f"hidden[0:{hidden_size}]")
    if embedding_size is not None:
        names.append(f"question_embedding[0:{embedding_size}]")
    return tuple(names)
