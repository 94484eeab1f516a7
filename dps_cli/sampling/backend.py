"""The backend seam: the protocol every sampling backend implements (the factory is `factory`).

A backend runs driver generators (power, dps, temperature, greedy, a judge) to completion: it
answers their `Prefill`, `Request` and `Decide` messages and reports each driver's return value.
Drivers never see how a backend decodes; a `Sequence` carries an opaque ``cache`` handle that only
the backend which made it reads. What happens between decode steps (admitting chains, resuming
drivers, batching controller calls, caching prompts) is the same for every backend and lives in
`driver_loop`; a backend supplies only its decoding.

Backends:
- ``hf``: Hugging Face eager decoding with a hand-made batch key/value cache (`engine.Engine`).
- ``vllm``: vLLM's engine (prefix caching, paged attention, continuous batching), see
  `vllm_backend`. Imported only when chosen.

``auto`` picks ``vllm`` when it is importable and a CUDA device is present, else ``hf``
(`factory.resolve_backend`). The resolved name is part of a run's identity (the run manifest's
``config.backend``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

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
