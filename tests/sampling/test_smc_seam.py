"""Power-SMC's bookkeeping and the request-group seam, without a model (DESIGN §1, §2).

A scripted responder answers `smc_chain`'s messages with made-up tokens and log-probabilities, so
the weights can be checked against their closed form exactly; a toy loop checks how the driver
loop serves request groups. The exact laws on real models are in test_smc_distribution.py.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

from dps_cli.sampling.backend import BackendStats
from dps_cli.sampling.driver_loop import Chain, DriverLoop, drive
from dps_cli.sampling.requests import (
    Completion,
    Prefill,
    PrefillResult,
    Request,
    RequestGroup,
    Sequence,
)
from dps_cli.sampling.smc import (
    SMCResult,
    SMCSettings,
    effective_sample_size,
    exponent_at,
    smc_chain,
    systematic_resample,
)

EMPTY = np.zeros(0, dtype=np.float32)
EOS = 3
PROMPT = (1, 2)


def prompt_sequence(ids: tuple[int, ...]) -> Sequence:
    return Sequence(np.asarray(ids, dtype=np.int64), len(ids), EMPTY, EMPTY, EMPTY, EMPTY)


def scripted_completion(request: Request) -> Completion:
    """Tokens from the request's own stream (EOS 1 time in 5); log p and log q made up per token."""
    base = request.base
    tokens: list[int] = []
    while len(tokens) < request.max_new:
        tokens.append(EOS if request.rng.random() < 0.2 else int(request.rng.integers(0, 3)))
        if tokens[-1] == EOS:
            break
    new = np.asarray(tokens, dtype=np.int64)
    logp = (-0.3 - 0.25 * new).astype(np.float32)
    logq = (-0.2 - 0.5 * new * request.temperature).astype(np.float32)
    keep = request.start - base.prompt_len

    def joined(old: np.ndarray, added: np.ndarray) -> np.ndarray:
        return np.concatenate([old[:keep], added])

    sequence = Sequence(np.concatenate([base.tokens[: request.start], new]), base.prompt_len,
                        joined(base.logp_base, logp), joined(base.logq_proposal, logq),
                        joined(base.entropy, logp), joined(base.max_prob, logp))
    return Completion(sequence, len(tokens), tokens[-1] == EOS, None)


def run_scripted(settings: SMCSettings, seed: int, with_replies: bool = False) -> Any:
    """Drive one chain by hand; returns its result and every group it asked for.

    The result's ``tokens_generated`` is checked here against the tokens handed out. With
    ``with_replies``, also the completions each group got.
    """
    chain = smc_chain(PROMPT, settings, np.random.default_rng(seed))
    groups: list[RequestGroup] = []
    reply: Any = None
    handed_out = 0
    replies: list[tuple[Completion, ...]] = []
    while True:
        try:
            item = chain.send(reply)
        except StopIteration as stop:
            assert stop.value.tokens_generated == handed_out
            return (stop.value, groups, replies) if with_replies else (stop.value, groups)
        if isinstance(item, Prefill):
            reply = PrefillResult(prompt_sequence(item.prompt_ids), None)
        else:
            assert isinstance(item, RequestGroup)
            groups.append(item)
            reply = tuple(scripted_completion(request) for request in item.requests)
            handed_out += sum(completion.new_tokens for completion in reply)
            replies.append(reply)


def ended_or_full(sequence: Sequence, max_new: int) -> bool:
    generated = sequence.generated
    return len(generated) == max_new or (len(generated) > 0 and int(generated[-1]) == EOS)


@pytest.mark.parametrize("bridge", [0, 2, 5, 40])
def test_without_resampling_each_weight_is_alpha_log_p_minus_log_q(bridge: int) -> None:
    """Bridged or not, every token's log p ends with coefficient alpha: w = alpha log p(x) - log q(x).

    The bridge of 40 tokens outlasts the 6 generated: the final step must raise a to alpha.
    """
    settings = SMCSettings(alpha=3.0, max_new_tokens=6, particles=5, chunk=2, ess_threshold=1e-9,
                           bridge=bridge, eos_token_ids=(EOS,))
    for seed in range(20):
        result, _ = run_scripted(settings, seed)
        assert result.resamples == 0
        for ids, log_w, sequence_logp in zip(result.particles, result.log_weights,
                                             _logs(result, settings), strict=True):
            logp, logq = sequence_logp
            assert len(ids) == len(logp)
            assert log_w == pytest.approx(3.0 * logp.sum() - logq.sum(), abs=1e-5)  # float32 inputs


def _logs(result: SMCResult, settings: SMCSettings) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each particle's log p and log q as the scripted responder reported them (its log q depends
    on the round's temperature)."""
    out = []
    for ids in result.particles:
        new = ids.astype(np.float64)
        temps = np.array([1.0 / exponent_at((j // settings.chunk) * settings.chunk, settings)
                          for j in range(len(ids))])
        logp = np.float32(-0.3) - np.float32(0.25) * new.astype(np.float32)
        logq = (np.float32(-0.2) - np.float32(0.5) * new.astype(np.float32) * temps.astype(np.float32))
        out.append((logp.astype(np.float32).astype(np.float64), logq.astype(np.float32).astype(np.float64)))
    return out


def test_rounds_ask_only_for_live_particles_at_the_bridged_temperatures() -> None:
    settings = SMCSettings(alpha=4.0, max_new_tokens=7, particles=6, chunk=3, ess_threshold=0.7,
                           bridge=4, eos_token_ids=(EOS,))
    for seed in range(20):
        result, groups = run_scripted(settings, seed)
        assert [g.requests[0].temperature for g in groups] == [1.0, 1 / 3.25, 1 / 4.0][: len(groups)]
        for group in groups:
            for request in group.requests:
                assert not ended_or_full(request.base, settings.max_new_tokens)  # frozen: no tokens
                assert request.start == len(request.base)
                assert request.max_new == min(3, 7 - (len(request.base) - len(PROMPT)))
        assert len(result.particles) == 6 and result.log_weights.shape == (6,)
        assert np.array_equal(result.completion_ids, result.particles[result.drawn])


def test_resampled_children_share_their_parents_sequence() -> None:
    """After resampling, siblings ask to extend the very `Sequence` their parent's round returned:
    the same object (on ``hf``, the same key/value cache), never a copy."""
    settings = SMCSettings(alpha=4.0, max_new_tokens=8, particles=8, chunk=2, ess_threshold=1.0,
                           eos_token_ids=(EOS,))
    siblings = 0
    for seed in range(10):
        result, groups, replies = run_scripted(settings, seed, with_replies=True)
        assert result.resamples > 0
        for group, previous in zip(groups[1:], replies, strict=False):
            returned = {id(completion.sequence) for completion in previous}
            bases = [id(request.base) for request in group.requests]
            assert set(bases) <= returned
            siblings += len(bases) - len(set(bases))
    assert siblings > 0


def test_each_particle_slot_has_its_own_stream() -> None:
    settings = SMCSettings(alpha=2.0, max_new_tokens=4, particles=4, chunk=4, ess_threshold=0.5,
                           eos_token_ids=(EOS,))
    _, groups = run_scripted(settings, 0)
    streams = [request.rng for request in groups[0].requests]
    assert len({id(rng) for rng in streams}) == 4
    again, _ = run_scripted(settings, 0)
    first, _ = run_scripted(settings, 0)
    assert all(np.array_equal(a, b) for a, b in zip(first.particles, again.particles, strict=True))
    assert np.array_equal(first.log_weights, again.log_weights) and first.log_z == again.log_z


def test_systematic_resampling_and_ess() -> None:
    rng = np.random.default_rng(0)
    log_w = np.log(np.array([0.5, 0.25, 0.125, 0.125]))
    counts = np.zeros(4)
    for _ in range(4000):
        ancestors = systematic_resample(log_w, rng)
        children = np.bincount(ancestors, minlength=4)
        assert np.all(np.abs(children - 4 * np.exp(log_w)) < 1 + 1e-9)  # floor or ceil of N W_i
        counts += children
    assert np.allclose(counts / 4000, [2.0, 1.0, 0.5, 0.5], atol=0.03)
    assert effective_sample_size(np.zeros(5)) == pytest.approx(5.0)
    assert effective_sample_size(np.array([0.0, -1e9, -1e9])) == pytest.approx(1.0)
    assert effective_sample_size(log_w) == pytest.approx(1 / np.sum(np.exp(2 * log_w)))


def test_exponent_rises_linearly_over_the_bridge() -> None:
    settings = SMCSettings(alpha=4.0, max_new_tokens=16, particles=2, chunk=4, ess_threshold=0.5, bridge=8)
    assert [exponent_at(t, settings) for t in (0, 4, 8, 12)] == [1.0, 2.5, 4.0, 4.0]
    unbridged = SMCSettings(alpha=4.0, max_new_tokens=16, particles=2, chunk=4, ess_threshold=0.5)
    assert exponent_at(0, unbridged) == 4.0


@pytest.mark.parametrize(("field", "value", "message"), [
    ("particles", 0, "number of particles must be at least 1"),
    ("chunk", 0, "chunk .* must be at least 1"),
    ("ess_threshold", 0.0, r"ESS threshold must lie in \(0, 1\]"),
    ("ess_threshold", 1.5, r"ESS threshold must lie in \(0, 1\]"),
    ("bridge", -1, "bridge length must be 0 or more"),
    ("alpha", 0.0, "alpha must be positive"),
    ("max_new_tokens", 0, "max_new_tokens must be at least 1"),
])
def test_bad_settings_are_refused_with_a_clear_sentence(field: str, value: float, message: str) -> None:
    good: dict[str, Any] = {"alpha": 4.0, "max_new_tokens": 8, "particles": 4, "chunk": 2,
                            "ess_threshold": 0.5, "bridge": 0}
    with pytest.raises(ValueError, match=message):
        SMCSettings(**{**good, field: value})


# ---------------------------------------------------------------- the driver loop's groups
class ToyLoop(DriverLoop):
    """Completes each pending request after ``request.max_new`` steps with copies of token 7."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pending: list[tuple[Chain, Request, int]] = []
        self.most_in_work = 0

    def _in_work(self) -> int:
        return len(self.pending)

    def _submit(self, chain: Chain, request: Request) -> None:
        self.pending.append((chain, request, request.max_new))
        self.most_in_work = max(self.most_in_work, len(self.pending))

    def _encode(self, item: Prefill) -> PrefillResult:
        return PrefillResult(prompt_sequence(item.prompt_ids), None)

    def step(self) -> None:
        still, done = [], []
        for chain, request, left in self.pending:
            (done if left == 1 else still).append((chain, request, left - 1))
        self.pending = still
        for chain, request, _ in done:
            base = request.base
            tokens = np.concatenate([base.tokens[: request.start], np.full(request.max_new, 7)])
            zeros = np.zeros(len(tokens) - base.prompt_len, dtype=np.float32)
            self._advance(chain, Completion(Sequence(tokens, base.prompt_len, zeros, zeros, zeros, zeros),
                                            request.max_new, False, None))


def grouped(prompt: tuple[int, ...], size: int) -> Generator[Any, Any, list[int]]:
    """Two rounds of ``size`` requests of different lengths; returns what each member got."""
    prefill = yield Prefill(prompt)
    rng = np.random.default_rng(0)
    first = yield RequestGroup(tuple(Request(prefill.sequence, len(prompt), 1 + i, 1.0, rng)
                                     for i in range(size)))
    assert isinstance(first, tuple) and len(first) == size
    second = yield RequestGroup(tuple(Request(c.sequence, len(c.sequence), 1, 1.0, rng) for c in first))
    return [c.new_tokens + len(c.sequence) for c in second]


def test_a_group_is_answered_in_order_and_counts_member_by_member() -> None:
    results: dict[int, list[int]] = {}
    loop = ToyLoop(iter([(i, grouped((i,), 3)) for i in range(5)]), results.__setitem__, 7, None)
    drive(loop, BackendStats(), None)
    # member i got 1 + i tokens in the first round, then 1 more: its sequence holds 1 + (1 + i) + 1
    assert results == {i: [1 + (1 + m) + 1 + 1 for m in range(3)] for i in range(5)}
    assert loop.most_in_work <= 7  # two groups of 3 fit, a third waits


def test_groups_larger_than_the_batch_or_empty_are_refused() -> None:
    loop = ToyLoop(iter([(0, grouped((1,), 4))]), lambda *_: None, 3, None)
    with pytest.raises(ValueError, match="group of 4 requests cannot run in a batch of 3"):
        drive(loop, BackendStats(), None)

    def empty() -> Generator[Any, Any, None]:
        yield RequestGroup(())

    with pytest.raises(ValueError, match="at least one request"):
        drive(ToyLoop(iter([(0, empty())]), lambda *_: None, 3, None), BackendStats(), None)


class ShrinkingLoop(ToyLoop):
    """Halves ``max_batch`` after its first step, as the hf engine does when out of memory."""

    def step(self) -> None:
        super().step()
        self.max_batch = max(1, self.max_batch // 2)


def test_a_group_waiting_when_the_batch_shrinks_below_it_still_runs() -> None:
    results: dict[int, list[int]] = {}
    loop = ShrinkingLoop(iter([(i, grouped((i,), 4)) for i in range(3)]), results.__setitem__, 8, None)
    drive(loop, BackendStats(), None)
    assert sorted(results) == [0, 1, 2]
