"""The vLLM backend's top-K log q against the exact chain, with a vocabulary larger than K.

vLLM returns the top-K log-probabilities (plus the sampled token's), so the backend computes q's
normalizer from those entries only and records per token how far its log q may lie above the true
one (``logq_bound``, vllm_backend.py). Here the vocabulary has 48 tokens and K = 20, so the bound
is positive at every position, and 2 new tokens without EOS give 2,304 completions: few enough
to enumerate. The MH ratio then uses log q' = a log p - log Z_K (Z_K over the top K and the
sampled token) while proposals come from the true q; `exact_chain` computes that chain's exact
law from the same top-K tables, and the chains follow it within the sampling noise. It also lies
within what the bound allows of the exact chain with true q: one MH step moves each state's
kernel by at most 1 - exp(-B) in TV when every compared sequence's bound is at most B, so k
steps by at most k (1 - exp(-B)).

Thresholds: `laws.tv_threshold` at 4,000 chains, false-failure rate 1e-3 per comparison (over
chain seeds; the seeds are fixed, so the test is deterministic); a bias of twice the threshold
fails with probability 0.999 (the docstring of `laws` says why). vLLM only: the ``hf`` backend
computes q exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from backend_fixtures import VllmPool, build_vllm_tiny_llama
from exact_chain import NO_EOS, TinyLaw, Tokens, run_chain, tiny_law
from laws import empirical_law, tv, tv_threshold

from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain

pytestmark = pytest.mark.vllm

VOCAB, TOP_K, NEW, ALPHA, PROMPT, K, CHAINS = 48, 20, 2, 4.0, (1,), 6, 4000
SEED, SCALE = 4, 8.0  # bound up to 0.008 per token; p^4 and q 0.45 apart in TV


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_vllm_tiny_llama(VOCAB, SEED, SCALE)


@pytest.fixture(scope="module")
def law(model) -> TinyLaw:  # type: ignore[no-untyped-def]
    return tiny_law(model, PROMPT, VOCAB, NO_EOS, NEW, ALPHA)


def top_k_tables(law: TinyLaw) -> tuple[dict[Tokens, np.ndarray], dict[Tokens, np.ndarray]]:
    """Per prefix and token: log q' as the backend computes it, and its recorded bound."""
    ratio, bound = {}, {}
    for prefix, logp in law.logp.items():
        top = np.argsort(logp)[::-1][:TOP_K]
        log_z_top = np.logaddexp.reduce(ALPHA * logp[top])
        outside = np.ones(VOCAB, dtype=bool)
        outside[top] = False
        log_z = np.where(outside, np.logaddexp(log_z_top, ALPHA * logp), log_z_top)  # + the sampled token
        known_mass = np.exp(logp[top]).sum() + np.where(outside, np.exp(logp), 0.0)
        p_floor = math.exp(logp[top[-1]])
        ratio[prefix] = ALPHA * logp - log_z
        bound[prefix] = np.log1p(p_floor ** (ALPHA - 1) * (1 - known_mass) / np.exp(log_z))
    return ratio, bound


@pytest.fixture(scope="module")
def chains(model, vllm_pool: VllmPool) -> list[Any]:  # type: ignore[no-untyped-def]
    backend = vllm_pool.get((VOCAB, SEED, SCALE), model).rebind(eos_token_ids=(), max_batch=512, top_k=TOP_K)
    settings = PowerSettings(alpha=ALPHA, max_new_tokens=NEW, blocks=1)
    results: list[Any] = []
    backend.run(((i, power_chain(PROMPT, settings, FixedK(K), np.random.default_rng(i))) for i in range(CHAINS)),
                lambda key, result: results.append(result))
    return results


def test_the_model_needs_more_than_the_top_k(law: TinyLaw) -> None:
    ratio, bound = top_k_tables(law)
    worst = max(float(b.max()) for b in bound.values())
    assert 1e-3 < worst < 0.01  # positive, and small enough for the allowance to mean something
    assert all(float(b.min()) > 0 for b in bound.values())
    assert tv(law.power(), law.tempered()) > 0.2


def test_every_chain_reports_a_positive_bound(chains: list[Any], law: TinyLaw) -> None:
    _, bound = top_k_tables(law)
    most = max(float(b.max()) for b in bound.values()) * NEW
    assert all(0 < result.logq_bound <= most * (1 + 1e-4) + 1e-6 for result in chains)


def test_chains_follow_the_top_k_chain_within_noise_and_the_bound(chains: list[Any], law: TinyLaw) -> None:
    ratio, _ = top_k_tables(law)
    sampled = empirical_law(tuple(result.completion_ids.tolist()) for result in chains)
    perturbed = run_chain(law.with_ratio(ratio), 1, "stop", K).law
    exact = run_chain(law, 1, "stop", K).law
    threshold = tv_threshold(perturbed, CHAINS)
    assert tv(sampled, perturbed) < threshold  # type: ignore[arg-type]
    allowance = K * (1 - math.exp(-max(result.logq_bound for result in chains)))
    assert tv(perturbed, exact) <= allowance
    assert tv(sampled, exact) < tv_threshold(exact, CHAINS) + allowance  # type: ignore[arg-type]
    assert tv(exact, law.power()) < tv(law.tempered(), law.power()) - 0.1  # K steps move towards p^alpha
