"""Budget policies: how k evolves at checkpoints. Fixed k never changes; DPS asks a controller.

A policy's `decide` is a generator so that DPS can yield a `Decide` request to the engine, which
answers all chains at the same checkpoint with one batched controller call.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from dps_cli.config import K_SCHEDULE, KSchedule
from dps_cli.sampling.requests import Decide
from dps_cli.sampling.results import CheckpointRecord


class KPolicy(Protocol):
    @property
    def initial_k(self) -> int:
        """The budget of the first blocks."""
        ...

    def decide(self, record: CheckpointRecord) -> Generator[Decide, float, tuple[int, float | None]]:
        """Return (k for the following blocks, p_enough or None)."""
        ...


@dataclass(frozen=True)
class FixedK:
    """Fixed-k power sampling: the budget never changes."""

    initial_k: int

    def decide(self, record: CheckpointRecord) -> Generator[Any, Any, tuple[int, float | None]]:
        return record.k, None
        yield  # pragma: no cover - makes this a generator


@dataclass(frozen=True)
class DynamicK:
    """DPS: start at k=2; escalate by 2 while ``1 - p_enough > tau`` and ``k < 8`` (`KSchedule`)."""

    tau: float
    schedule: KSchedule = K_SCHEDULE

    @property
    def initial_k(self) -> int:
        return self.schedule.start

    def decide(self, record: CheckpointRecord) -> Generator[Decide, float, tuple[int, float | None]]:
        p_enough = yield Decide(record)
        return self.schedule.next_k(record.k, p_enough, self.tau), p_enough
