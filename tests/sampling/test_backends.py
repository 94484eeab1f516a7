"""Both backends on the same tiny model: recorded statistics, greedy decoding, reproducibility,
hidden features; and the vllm backend's top-K arithmetic for log q, entropy and the tail bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dps_cli.errors import UserError
from dps_cli.sampling.factory import make_backend, resolve_backend, vllm_available
from dps_cli.sampling.power import PowerSettings, power_chain, sampling_chain
from dps_cli.sampling.requests import Completion, Prefill, PrefillResult, Request, Sequence
from dps_cli.sampling.vllm_backend import token_stats

PROMPTS = [(1,), (2, 3), (0, 1, 2), (3, 3, 1, 0)]


def exact_stats(logits: torch.Tensor, tokens: list[int], temperature: float) -> dict[str, np.ndarray]:
    """Per-token log p, log q, entropy and max p from full (n, V) logits."""
    logp_all = torch.log_softmax(logits.double(), -1)
    chosen = torch.tensor(tokens)[:, None]
    return {
        "logp": logp_all.gather(-1, chosen).squeeze(-1).numpy(),
        "logq": torch.log_softmax(logits.double() / temperature, -1).gather(-1, chosen).squeeze(-1).numpy(),
        "entropy": -(logp_all.exp() * logp_all).sum(-1).numpy(),
        "max_prob": logp_all.exp().max(-1).values.numpy(),
    }


def top_k_entries(logits: torch.Tensor, tokens: list[int], k: int) -> list[dict[int, float]]:
    """What vLLM returns per position: the top-k raw log-probabilities plus the sampled token's."""
    logp_all = torch.log_softmax(logits.double(), -1)
    entries = []
    for row, token in zip(logp_all, tokens, strict=True):
        top = torch.topk(row, k).indices.tolist()
        entries.append({int(t): float(row[t]) for t in {*top, token}})
    return entries


def test_token_stats_are_exact_when_top_k_covers_the_vocabulary() -> None:
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 3
    tokens = [0, 4, 2, 2, 1, 3]
    stats = token_stats(tokens, top_k_entries(logits, tokens, 5), 0.25, vocab_size=5, top_k=5)
    exact = exact_stats(logits, tokens, 0.25)
    for name, ours in (("logp", stats.logp_base), ("logq", stats.logq_proposal), ("entropy", stats.entropy),
                       ("max_prob", stats.max_prob)):
        np.testing.assert_allclose(ours, exact[name], atol=1e-5, err_msg=name)
    assert not stats.logq_bound.any()


def test_top_k_log_q_errs_upwards_by_at_most_the_recorded_bound() -> None:
    logits = torch.randn(200, 64, generator=torch.Generator().manual_seed(1)) * 2
    tokens = torch.multinomial(torch.softmax(logits * 4, -1), 1, generator=torch.Generator().manual_seed(2))
    tokens_list = tokens.squeeze(-1).tolist()
    stats = token_stats(tokens_list, top_k_entries(logits, tokens_list, 8), 0.25, vocab_size=64, top_k=8)
    exact = exact_stats(logits, tokens_list, 0.25)
    error = stats.logq_proposal.astype(np.float64) - exact["logq"]
    assert (error >= -1e-5).all()  # Z from the known entries only is too small: log q too large
    assert (error <= stats.logq_bound + 1e-5).all()
    assert stats.logq_bound.max() > 0
    np.testing.assert_allclose(stats.logp_base, exact["logp"], atol=1e-5)
    np.testing.assert_allclose(stats.max_prob, exact["max_prob"], atol=1e-6)
    assert (stats.entropy <= exact["entropy"] + 1e-5).all()  # the tail counted at its lower bound


def _scripted_completion(request: Request, new: list[int], bound: list[float]) -> Completion:
    """What a backend would return for ``request``: ``new`` tokens with these per-token bounds."""
    base, keep = request.base, request.start - request.base.prompt_len
    old_bound = base.logq_bound if base.logq_bound is not None else np.zeros(len(base) - base.prompt_len)

    def joined(old: np.ndarray, values: list[float]) -> np.ndarray:
        return np.concatenate([old[:keep], np.asarray(values, dtype=np.float32)]).astype(np.float32)

    zeros = [0.0] * len(new)
    sequence = Sequence(np.concatenate([base.tokens[: request.start], new]).astype(np.int64), base.prompt_len,
                        joined(base.logp_base, [-1.0] * len(new)), joined(base.logq_proposal, [-1.0] * len(new)),
                        joined(base.entropy, zeros), joined(base.max_prob, zeros), logq_bound=joined(old_bound, bound))
    return Completion(sequence, len(new), False, None)


def test_a_chain_records_the_largest_log_q_bound_it_compared() -> None:
    """The row's ``logq_bound`` is the largest summed bound of any sequence an MH ratio read,
    a rejected proposal's included: here the first proposal carries the largest."""
    from dps_cli.sampling.policies import FixedK

    empty = np.zeros(0, dtype=np.float32)
    chain = power_chain((1,), PowerSettings(alpha=2.0, max_new_tokens=2, blocks=1), FixedK(2),
                        np.random.default_rng(0))
    assert isinstance(chain.send(None), Prefill)
    request = chain.send(PrefillResult(Sequence(np.array([1]), 1, empty, empty, empty, empty), None))
    sums = []
    for per_token in (0.1, 0.4, 0.0):  # the extension, then the two proposals
        completion = _scripted_completion(request, [2] * request.max_new, [per_token] * request.max_new)
        sums.append(completion.sequence.max_suffix_logq_bound())
        try:
            request = chain.send(completion)
        except StopIteration as stop:
            result = stop.value
    assert result.proposals_attempted == 2
    assert sums[1] == max(sums) > sums[0] > 0
    assert result.logq_bound == pytest.approx(sums[1])


def test_greedy_records_log_q_zero() -> None:
    stats = token_stats([1], [{1: math.log(0.7), 0: math.log(0.3)}], 0.0, vocab_size=2, top_k=2)
    assert stats.logq_proposal.tolist() == [0.0] and stats.logp_base[0] == pytest.approx(math.log(0.7))


def test_resolve_backend() -> None:
    assert resolve_backend("hf") == "hf"
    assert resolve_backend("auto") in ("hf", "vllm")
    if not torch.cuda.is_available():
        assert resolve_backend("auto") == "hf"
    with pytest.raises(UserError, match="Unknown backend"):
        resolve_backend("tgi")
    if not vllm_available():
        with pytest.raises(UserError, match="not installed"):
            make_backend("vllm", None, ())


def test_recorded_statistics_match_a_fresh_forward_pass(sampler) -> None:  # type: ignore[no-untyped-def]
    drivers = [(i, sampling_chain(p, 6, 0.5, np.random.default_rng(i))) for i, p in enumerate(PROMPTS)]
    for _, result in sampler.run(drivers):
        seq = result.sequence
        with torch.no_grad():
            logits = sampler.model(torch.tensor(seq.tokens[None, :])).logits[0, seq.prompt_len - 1:-1].float()
        exact = exact_stats(logits, seq.generated.tolist(), 0.5)
        assert len(seq.generated) == 6
        np.testing.assert_allclose(seq.logp_base, exact["logp"], atol=1e-4)
        np.testing.assert_allclose(seq.logq_proposal, exact["logq"], atol=1e-4)
        np.testing.assert_allclose(seq.entropy, exact["entropy"], atol=1e-4)
        np.testing.assert_allclose(seq.max_prob, exact["max_prob"], atol=1e-5)
        assert seq.max_suffix_logq_bound() == pytest.approx(0.0, abs=1e-6)


def test_greedy_picks_the_argmax_at_every_step(sampler) -> None:  # type: ignore[no-untyped-def]
    """Each greedy token is a most likely one under a fresh forward pass (ties within float noise)."""
    drivers = [(i, sampling_chain(p, 8, 0.0, np.random.default_rng(0))) for i, p in enumerate(PROMPTS)]
    for _, result in sampler.run(drivers):
        seq = result.sequence
        with torch.no_grad():
            logits = sampler.model(torch.tensor(seq.tokens[None, :])).logits[0, seq.prompt_len - 1:-1]
        logp = torch.log_softmax(logits.double(), -1)
        chosen = logp.gather(-1, torch.tensor(seq.generated.tolist())[:, None]).squeeze(-1)
        assert len(seq.generated) == 8
        assert (chosen >= logp.max(-1).values - 1e-4).all()
        assert not seq.logq_proposal.any()


def test_a_chain_is_reproducible_whatever_shares_its_batch(sampler) -> None:  # type: ignore[no-untyped-def]
    settings = PowerSettings(alpha=4.0, max_new_tokens=8, blocks=2)

    def finals(chains: int, max_batch: int) -> dict[int, list[int]]:
        drivers = [(i, power_chain(PROMPTS[i % 4], settings, _fixed(2), np.random.default_rng(i)))
                   for i in range(chains)]
        return {k: r.sequence.tokens.tolist() for k, r in sampler.run(drivers, max_batch=max_batch)}

    alone, crowded = finals(4, 1), finals(12, 12)
    assert all(alone[i] == crowded[i] for i in range(4))


def test_more_prompt_tokens_than_one_engine_step_takes(sampler) -> None:  # type: ignore[no-untyped-def]
    """96 seeded 56-token prompts at once exceed vLLM's token budget per step. A prefill split
    across steps made vLLM's CPU engine rewind a seeded generator it cannot rewind, and die."""
    prompts = [tuple(np.random.default_rng(i).integers(0, 4, 56).tolist()) for i in range(96)]
    drivers = [(i, sampling_chain(p, 4, 1.0, np.random.default_rng(i))) for i, p in enumerate(prompts)]
    results = dict(sampler.run(drivers))
    assert sorted(results) == list(range(96))
    assert all(len(result.sequence.generated) == 4 for result in results.values())


def test_stop_tokens_end_a_request(sampler) -> None:  # type: ignore[no-untyped-def]
    drivers = [(i, sampling_chain(p, 30, 1.0, np.random.default_rng(i), (3,))) for i, p in enumerate(PROMPTS * 4)]
    for _, result in sampler.run(drivers, eos_token_ids=(3,)):
        generated = result.sequence.generated.tolist()
        assert 3 not in generated[:-1]
        assert generated[-1] == 3 or len(generated) == 30


def _greedy_with_hidden(prompt: tuple[int, ...], n: int):  # type: ignore[no-untyped-def]
    """A driver returning (prompt hidden mean, completion) for one greedy request with hidden states."""
    prefill = yield Prefill(prompt, want_hidden=True)
    first = yield Request(prefill.sequence, len(prompt), n, 0.0, np.random.default_rng(0), want_hidden=True)
    # a second request from inside the first one's tokens, as an MH proposal would make
    again = yield Request(first.sequence, len(prompt) + 2, n - 2, 0.0, np.random.default_rng(0), want_hidden=True)
    return prefill.prompt_hidden_mean, first, again


@pytest.mark.vllm
def test_backends_agree_on_hidden_features(vllm_pool) -> None:  # type: ignore[no-untyped-def]
    """The same tokens on both backends give the same layer-L means (one definition, two backends)."""
    from backend_fixtures import TINY_SCALE, TINY_SEED, TINY_VOCAB, Sampler, build_vllm_tiny_llama

    model = build_vllm_tiny_llama()
    vllm = vllm_pool.get((TINY_VOCAB, TINY_SEED, TINY_SCALE), model)
    results = {}
    for name, backend in (("hf", None), ("vllm", vllm)):
        drivers = [(i, _greedy_with_hidden(p, 6)) for i, p in enumerate(PROMPTS)]
        results[name] = dict(Sampler(name, model, backend).run(drivers, hidden_layer=1))
    for key in range(len(PROMPTS)):
        (q_hf, first_hf, again_hf), (q_vllm, first_vllm, again_vllm) = results["hf"][key], results["vllm"][key]
        assert first_hf.sequence.tokens.tolist() == first_vllm.sequence.tokens.tolist()
        np.testing.assert_allclose(q_hf, q_vllm, atol=1e-4)
        np.testing.assert_allclose(first_hf.hidden_mean, first_vllm.hidden_mean, atol=1e-4)
        np.testing.assert_allclose(again_hf.hidden_mean, again_vllm.hidden_mean, atol=1e-4)
        assert first_vllm.hidden_mean.shape == (64,)


def _fixed(k: int):  # type: ignore[no-untyped-def]
    from dps_cli.sampling.policies import FixedK

    return FixedK(k)


def test_chains_whose_top_k_covers_the_vocabulary_record_no_bound(sampler) -> None:  # type: ignore[no-untyped-def]
    settings = PowerSettings(alpha=4.0, max_new_tokens=6, blocks=2)
    drivers = [(i, power_chain(PROMPTS[i % 4], settings, _fixed(2), np.random.default_rng(i))) for i in range(8)]
    assert [result.logq_bound for _, result in sampler.run(drivers)] == [0.0] * 8


@pytest.mark.vllm
def test_a_top_k_below_the_vocabulary_records_a_bound_per_chain(vllm_pool) -> None:  # type: ignore[no-untyped-def]
    from backend_fixtures import TINY_SCALE, TINY_SEED, TINY_VOCAB, Sampler, build_vllm_tiny_llama

    model = build_vllm_tiny_llama()
    backend = vllm_pool.get((TINY_VOCAB, TINY_SEED, TINY_SCALE), model).rebind(top_k=2)
    settings = PowerSettings(alpha=4.0, max_new_tokens=6, blocks=2)
    drivers = [(i, power_chain(PROMPTS[i % 4], settings, _fixed(2), np.random.default_rng(i))) for i in range(8)]
    for _, result in Sampler("vllm", model, backend).run(drivers):
        assert result.logq_bound >= result.sequence.max_suffix_logq_bound() > 0
    with pytest.raises(ValueError, match="outside 1..4"):
        backend.rebind(top_k=5)
