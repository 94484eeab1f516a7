"""Out of GPU memory in the ``hf`` engine, by failures injected on the CPU.

CUDA's allocator raises `torch.cuda.OutOfMemoryError`; here the engine's forward pass (or its batch
cache) raises it on chosen calls. The run must halve its batch, re-queue the requests in flight
whole and rewind their generators, so that every chain finishes exactly once with the tokens it
has without the failure, and log one line per failure; a batch of one that does not fit stops
with one sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama

from dps_cli.errors import UserError
from dps_cli.sampling.engine import Engine
from dps_cli.sampling.kvcache import BatchKV
from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain

EOS = 2
OOM_LOG = "Out of GPU memory with"


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_tiny_llama(40, seed=0, eos_token_id=EOS, scale=3.0)


def chains() -> list[tuple[tuple[int, int], Any]]:
    settings = PowerSettings(alpha=4.0, max_new_tokens=16, blocks=4, eos_token_ids=(EOS,))
    prompts = [tuple(int(t) for t in np.random.default_rng(i).integers(3, 40, size=3 + i)) for i in range(5)]
    return [((i, s), power_chain(p, settings, FixedK(3), np.random.default_rng([i, s])))
            for i, p in enumerate(prompts) for s in range(3)]


class FailingForward:
    """``engine.forward`` raising CUDA's out-of-memory error on the calls ``fails`` picks.

    ``fails(rows, columns, calls)`` sees the batch's rows, the new columns (1: a decode step,
    more: a prompt) and how many such calls came before this one.
    """

    def __init__(self, forward: Callable[..., torch.Tensor], fails: Callable[[int, int, int], bool]) -> None:
        self.forward, self.fails = forward, fails
        self.calls = {"decode": 0, "prompt": 0}
        self.raised = 0

    def __call__(self, kv: BatchKV, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        rows, columns = input_ids.shape
        kind = "decode" if columns == 1 else "prompt"
        self.calls[kind] += 1
        if self.fails(rows, columns, self.calls[kind] - 1):
            self.raised += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return self.forward(kv, input_ids, position_ids)


def run(model: Any, max_batch: int, fails: Callable[[int, int, int], bool] | None = None
        ) -> tuple[dict[Any, Any], list[Any], Engine]:
    """Results by key, the keys in the order reported, and the engine."""
    engine = Engine(model, (EOS,), max_batch=max_batch)
    if fails is not None:
        engine.forward = FailingForward(engine.forward, fails)  # type: ignore[method-assign]
    results: dict[Any, Any] = {}
    order: list[Any] = []

    def done(key: Any, result: Any) -> None:
        order.append(key)
        results[key] = result

    engine.run(chains(), done)
    return results, order, engine


def assert_same_chains(got: dict[Any, Any], order: list[Any], expected: dict[Any, Any]) -> None:
    assert sorted(order) == sorted(expected)  # every chain reported, none twice
    for key, result in expected.items():
        assert got[key].sequence.tokens.tolist() == result.sequence.tokens.tolist(), key
        assert got[key].proposals_accepted == result.proposals_accepted
        np.testing.assert_allclose(got[key].sequence.logp_base, result.sequence.logp_base, atol=1e-5)


@pytest.fixture(scope="module")
def baseline(model):  # type: ignore[no-untyped-def]
    results, _, engine = run(model, max_batch=8)
    return results, engine.stats.tokens


def oom_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(OOM_LOG)]


def test_oom_in_a_decode_step_halves_the_batch_and_keeps_every_chain(model, baseline, caplog) -> None:  # type: ignore[no-untyped-def]
    # batches of more than 3 rows fail from the 6th decode step on: the 8 rows in flight have each
    # drawn 5 uniforms from their chains' generators, which the retry must rewind
    with caplog.at_level(logging.WARNING, logger="dps_cli.sampling.engine"):
        results, order, engine = run(model, 8, lambda rows, columns, calls: columns == 1 and rows > 3 and calls >= 5)
    assert engine.forward.raised == 2  # type: ignore[attr-defined]
    assert oom_lines(caplog) == [
        "Out of GPU memory with 8 chains in the batch: retrying 8 of them from their start, at most 4 at a time.",
        "Out of GPU memory with 4 chains in the batch: retrying 4 of them from their start, at most 2 at a time.",
    ]
    assert_same_chains(results, order, baseline[0])
    assert engine.stats.tokens == baseline[1]  # the discarded tokens are not counted


def test_oom_while_encoding_a_prompt_shrinks_the_decode_batch(model, baseline, caplog) -> None:  # type: ignore[no-untyped-def]
    # 8 chains of the first three prompts start together; the fourth prompt is encoded while they
    # decode, and its first try fails
    with caplog.at_level(logging.WARNING, logger="dps_cli.sampling.engine"):
        results, order, engine = run(model, 8, lambda rows, columns, calls: columns > 1 and calls == 3)
    assert engine.forward.raised == 1  # type: ignore[attr-defined]
    assert len(oom_lines(caplog)) == 1
    assert_same_chains(results, order, baseline[0])


def test_oom_while_forming_the_batch_loses_no_request(model, baseline, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    add_rows = BatchKV.add_rows
    raised: list[int] = []

    def failing_add_rows(self: BatchKV, kvs: list[torch.Tensor | None]) -> list[int]:
        if len(kvs) > 1 and not raised:  # the first decode batch; a prompt's cache adds one row
            raised.append(len(kvs))
            self.keys[0] = torch.cat([self.keys[0], torch.zeros_like(self.keys[0][:0])])  # a layer grown
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return add_rows(self, kvs)

    monkeypatch.setattr(BatchKV, "add_rows", failing_add_rows)
    with caplog.at_level(logging.WARNING, logger="dps_cli.sampling.engine"):
        results, order, _ = run(model, 8)
    assert raised == [8]
    assert oom_lines(caplog) == [
        "Out of GPU memory with 8 chains in the batch: retrying 0 of them from their start, at most 4 at a time."]
    assert_same_chains(results, order, baseline[0])


def test_a_batch_of_one_that_does_not_fit_stops_with_one_sentence(model, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="dps_cli.sampling.engine"), pytest.raises(UserError) as error:
        run(model, 4, lambda rows, columns, calls: columns == 1)
    assert len(oom_lines(caplog)) == 2  # 4 -> 2 -> 1, then the single chain fails
    message = str(error.value)
    assert message == ("Out of GPU memory decoding a single chain (up to 4 new tokens after a prefix of 3 "
                       "tokens) of LlamaForCausalLM in float32: lower --max-new-tokens or use a device "
                       "with more memory.")
