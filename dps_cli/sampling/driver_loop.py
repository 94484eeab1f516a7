"""The driver side of one backend run, shared by every backend (DESIGN §2).

Whatever a backend decodes with, the same things happen between its decode steps: chains are
admitted while fewer than ``max_batch`` are in work, each driver is resumed until it asks for
something the backend must batch, controller queries from every chain that reached a checkpoint
are answered in one call, and prompt encodings are cached. Keeping that here means a second
backend cannot drift from the first in admission order or in how a driver's messages are read.

A `RequestGroup` is served here too, so backends never see one: each member is submitted as an
ordinary request under a member `Chain` that points back at the group, and the driver resumes
with the tuple of completions once the last member is done. Members count toward ``max_batch``
one by one. Groups are submitted between decode steps, oldest first, each once it fits beside
the requests in work; a waiting group holds back the admission of new chains.

A backend's run subclasses `DriverLoop` and supplies the decoding: `_encode` (a `Prefill`),
`_submit` (a `Request`), `_in_work`, `_place_requests` and `step`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dps_cli.sampling.backend import BackendStats, Decider, Driver, OnDone
from dps_cli.sampling.requests import Decide, Prefill, PrefillResult, Request, RequestGroup

PREFILL_CACHE_SIZE = 8
PrefillKey = tuple[tuple[int, ...], bool, tuple[int, ...]]


@dataclass
class Chain:
    """One driver and the key its result is reported under.

    A member of a request group carries the group and its place in it; its completion is
    collected there instead of resuming the driver.
    """

    key: Any
    driver: Driver
    group: _Gathering | None = None
    member: int = 0


@dataclass
class _Gathering:
    """The completions of one request group so far, and the chain waiting for all of them."""

    chain: Chain
    completions: list[Any]
    pending: int


class DriverLoop:
    """Admission, driver resumption, batched controller calls and the prompt cache of one run."""

    def __init__(self, chains: Iterator[tuple[Any, Driver]], on_done: OnDone, max_batch: int,
                 decider: Decider | None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.chains = chains
        self.on_done = on_done
        self.max_batch = max_batch  # a backend may lower it during the run (out of memory)
        self.group_limit = max_batch  # the largest request group: the batch the run was given
        self.decider = decider
        self.exhausted = False
        self.deciding: list[tuple[Chain, Decide]] = []
        self.waiting_groups: deque[tuple[Chain, RequestGroup]] = deque()
        self.waiting_requests = 0  # members of the waiting groups
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
            self._submit_waiting_groups()
            self._place_requests()
            if self._decoding():
                return True
            if self.exhausted and self._load() == 0:
                return False

    def _load(self) -> int:
        return self._in_work() + len(self.deciding) + self.waiting_requests

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
        """Resume a driver until it asks for something the backend must batch, or finishes.

        A group member's completion is only collected until the group's last one arrives.
        """
        if chain.group is not None:
            gathering = chain.group
            gathering.completions[chain.member] = value
            gathering.pending -= 1
            if gathering.pending:
                return
            chain, value = gathering.chain, tuple(gathering.completions)
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
            elif isinstance(item, RequestGroup):
                self._check_group(item)
                self.waiting_groups.append((chain, item))  # submitted by `schedule`, once per step
                self.waiting_requests += len(item.requests)
                return
            elif isinstance(item, Decide):
                self.deciding.append((chain, item))
                return
            else:
                raise TypeError(f"driver yielded {type(item).__name__}, expected Prefill, Request, "
                                "RequestGroup or Decide")

    def _check_group(self, group: RequestGroup) -> None:
        """Refuse an empty group, one larger than the run's batch, or a bad member."""
        if not group.requests:
            raise ValueError("a request group needs at least one request")
        if len(group.requests) > self.group_limit:
            raise ValueError(f"a group of {len(group.requests)} requests cannot run in a batch of "
                             f"{self.group_limit}; raise the batch size to at least the group's size")
        for request in group.requests:
            check_request(request)

    def _submit_waiting_groups(self) -> None:
        """Submit waiting groups, oldest first, while each fits beside the requests in work.

        A group goes in whole even when larger than ``max_batch`` if nothing else is in work: a
        backend may lower ``max_batch`` after the group was accepted (out of memory), and it
        queues what its batch cannot take.
        """
        in_work = self._in_work()
        while self.waiting_groups:
            chain, group = self.waiting_groups[0]
            if in_work and in_work + len(group.requests) > self.max_batch:
                return
            self.waiting_groups.popleft()
            self.waiting_requests -= len(group.requests)
            in_work += len(group.requests)
            gathering = _Gathering(chain, [None] * len(group.requests), len(group.requests))
            for member, request in enumerate(group.requests):
                self._submit(Chain(chain.key, chain.driver, gathering, member), request)

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
