"""The driver loop both backends share, on a toy backend that completes requests by itself."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

from dps_cli.sampling.backend import BackendStats
from dps_cli.sampling.driver_loop import Chain, DriverLoop, check_request, drive
from dps_cli.sampling.requests import Completion, Decide, Prefill, PrefillResult, Request, Sequence

EMPTY = np.zeros(0, dtype=np.float32)


def prompt_sequence(ids: tuple[int, ...]) -> Sequence:
    return Sequence(np.asarray(ids, dtype=np.int64), len(ids), EMPTY, EMPTY, EMPTY, EMPTY)


class ToyLoop(DriverLoop):
    """Answers every pending request in one step with ``max_new`` copies of token 7."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pending: list[tuple[Chain, Request]] = []
        self.encoded = 0
        self.most_in_work = 0

    def _in_work(self) -> int:
        return len(self.pending)

    def _submit(self, chain: Chain, request: Request) -> None:
        self.pending.append((chain, request))
        self.most_in_work = max(self.most_in_work, len(self.pending))

    def _encode(self, item: Prefill) -> PrefillResult:
        self.encoded += 1
        return PrefillResult(prompt_sequence(item.prompt_ids), None)

    def step(self) -> None:
        batch, self.pending = self.pending, []
        for chain, request in batch:
            self._complete(chain, request)

    def _complete(self, chain: Chain, request: Request) -> None:
        base = request.base
        tokens = np.concatenate([base.tokens[: request.start], np.full(request.max_new, 7)])
        zeros = np.zeros(len(tokens) - base.prompt_len, dtype=np.float32)
        self._advance(chain, Completion(Sequence(tokens, base.prompt_len, zeros, zeros, zeros, zeros),
                                        request.max_new, False, None))


def two_requests_and_a_decision(prompt: tuple[int, ...]) -> Generator[Any, Any, tuple[int, float]]:
    prefill = yield Prefill(prompt)
    first = yield Request(prefill.sequence, len(prompt), 2, 1.0, np.random.default_rng(0))
    p_enough = yield Decide(features=len(first.sequence))
    second = yield Request(first.sequence, len(prompt) + 1, 3, 1.0, np.random.default_rng(0))
    return len(second.sequence), p_enough


def test_every_driver_finishes_within_max_batch_with_batched_decisions() -> None:
    calls: list[list[Any]] = []

    def decider(features: list[Any]) -> np.ndarray:
        calls.append(features)
        return np.full(len(features), 0.25)

    done: dict[int, Any] = {}
    drivers = ((i, two_requests_and_a_decision((1, 2))) for i in range(10))
    loop = ToyLoop(drivers, done.__setitem__, 3, decider)
    drive(loop, BackendStats(), None)
    assert done == {i: (6, 0.25) for i in range(10)}
    assert loop.most_in_work <= 3
    assert loop.encoded == 1  # the ten chains share one prompt: encoded once
    assert sum(len(c) for c in calls) == 10 and len(calls) < 10  # decisions come in batches


def test_a_decision_without_a_decider_and_a_bad_message_fail_loudly() -> None:
    with pytest.raises(RuntimeError, match="no decider"):
        drive(ToyLoop(iter([(0, two_requests_and_a_decision((1,)))]), print, 2, None), BackendStats(), None)

    def bad() -> Generator[Any, Any, None]:
        yield "tokens please"

    with pytest.raises(TypeError, match="driver yielded str"):
        drive(ToyLoop(iter([(0, bad())]), print, 2, None), BackendStats(), None)
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        ToyLoop(iter([]), print, 0, None)


def test_requests_no_backend_can_serve_are_refused() -> None:
    base = prompt_sequence((1, 2, 3))
    rng = np.random.default_rng(0)
    check_request(Request(base, 3, 1, 1.0, rng))
    with pytest.raises(ValueError, match="outside"):
        check_request(Request(base, 4, 1, 1.0, rng))
    with pytest.raises(ValueError, match="outside"):
        check_request(Request(base, 2, 1, 1.0, rng))  # inside the prompt
    with pytest.raises(ValueError, match="at least 1"):
        check_request(Request(base, 3, 0, 1.0, rng))
