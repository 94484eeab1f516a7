"""The driver side of one backend run, shared by every backend (DESIGN §2).

Whatever a backend decodes with, the same things happen between its decode steps: chains are
admitted while fewer than ``max_batch`` are in work, each driver is resumed until it asks for
something the backend must batch, controller queries from every chain that reached a checkpoint
are answered in one call, and prompt encodings are cached. Keeping that here means a second
backend cannot drift from the first in admission order or in how a driver's messages are read.

A backend's run subclasses `DriverLoop` and supplies the decoding: `_encode` (a `Prefill`),
`_submit` (a `Request`), `_in_work`, `_place_requests` and `step`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dps_cli.sampling.backend import BackendStats, Decider, Driver, OnDone
from dps_cli.sampling.requests import Decide, Prefill, PrefillResult, Request

PREFILL_CACHE_SIZE = 8
PrefillKey = tuple[tuple[int, ...], bool, tuple[int, ...]]


@dataclass
class Chain:
    """One driver and the key its result is reported under."""

    key: Any
    driver: Driver


class DriverLoop:
    """Admission, driver resumption, batched controller calls and the prompt cache of one run."""

    def __init__(self, chains: Iterator[tuple[Any, Driver]], on_done: OnDone, max_batch: int,
                 decider: Decider | None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.chains = chains
        self.on_done = on_done
        self.max_batch = max_batch
        self.decider = decider
        self.exhausted = False
        self.deciding: list[tuple[Chain, Decide]] = []
        self.prefills: OrderedDict[PrefillKey, PrefillResult] = OrderedDict()

    # ------------------------------------------------------- for the backend
    def _in_work(self) -> int:
        """Requests accepted and not yet completed (queued or decoding)."""
        raise NotImplementedError

    def _submit(self, chain: Chain, request: Request) -> None:
        """Accept a chain's request; its completion goes back through `_advance`."""
        raise NotImplementedError

    def _encode(self, item: Prefill) -> PrefillResult:
        """Encode a prompt (called once per distinct prompt while it stays cached)."""
        raise NotImplementedError

    def _place_requests(self) -> None:
        """Move accepted requests into the decode batch (nothing to do where the engine queues)."""

    def _decoding(self) -> bool:
        """Whether a decode step has work; by default, whenever a request is in work."""
        return self._in_work() > 0

    def step(self) -> None:
        """One decode step; completions are handed to their chains through `_advance`."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared
    def schedule(self) -> bool:
        """Admit chains, answer controller queries, place requests; False when all work is done."""
        while True:
            self._admit_chains()
            if self.deciding:
                self._answer_decisions()
                continue
            self._place_requests()
            if self._decoding():
                return True
            if self.exhausted and self._load() == 0:
                return False

    def _load(self) -> int:
        return self._in_work() + len(self.deciding)

    def _admit_chains(self) -> None:
        while not self.exhausted and self._load() < self.max_batch:
            try:
                key, driver = next(self.chains)
            except StopIteration:
                self.exhausted = True
                return
            self._advance(Chain(key, driver), None)

    def _answer_decisions(self) -> None:
        batch, self.deciding = self.deciding, []
        if self.decider is None:
            raise RuntimeError("a driver asked for a controller decision but the backend has no decider")
        p_enough = self.decider([decide.features for _, decide in batch])
        for (chain, _), p in zip(batch, p_enough, strict=True):
            self._advance(chain, float(p))

    def _advance(self, chain: Chain, value: Any) -> None:
        """Resume a driver until it asks for something the backend must batch, or finishes."""
        while True:
            try:
                item = chain.driver.send(value)
            except StopIteration as stop:
                self.on_done(chain.key, stop.value)
                return
            if isinstance(item, Prefill):
                value = self._prefill(item)
            elif isinstance(item, Request):
                check_request(item)
                self._submit(chain, item)
                return
            elif isinstance(item, Decide):
                self.deciding.append((chain, item))
                return
            else:
                raise TypeError(f"driver yielded {type(item).__name__}, expected Prefill, Request or Decide")

    def _prefill(self, item: Prefill) -> PrefillResult:
        """`_encode`, through a small LRU cache: the seeds of one question share their prompt."""
        key = (item.prompt_ids, item.want_hidden, item.score_tokens)
        if key in self.prefills:
            self.prefills.move_to_end(key)
            return self.prefills[key]
        result = self._encode(item)
        self.prefills[key] = result
        if len(self.prefills) > PREFILL_CACHE_SIZE:
            self.prefills.popitem(last=False)
        return result


def check_request(request: Request) -> None:
    """Refuse a request no backend can serve: a start outside the sequence, or nothing to sample."""
    base = request.base
    if not base.prompt_len <= request.start <= len(base) or request.start < 1:
        raise ValueError(f"request start {request.start} outside [{base.prompt_len}, {len(base)}]")
    if request.max_new < 1:
        raise ValueError(f"request for {request.max_new} tokens; ask for at least 1")


def drive(loop: DriverLoop, stats: BackendStats, on_step: Callable[[BackendStats], None] | None) -> BackendStats:
    """Step ``loop`` until every chain has finished; ``on_step`` sees the running totals."""
    while loop.schedule():
        loop.step()
        if on_step is not None:
            on_step(stats)
    return stats
