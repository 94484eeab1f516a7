"""Statistical tests of the drivers against exact distributions enumerated through the model.

A 4-token vocabulary with EOS disabled, a 1-token prompt and 3 new tokens give 64 sequences whose
exact probabilities we compute with one forward pass (`exact_chain.tiny_law`); thousands of chains
at fixed seeds are then compared in total-variation distance with the exact law they should
follow: the chain's own law after k proposals (`exact_chain.chain_law`), or the proposal's law for
the temperature driver. Thresholds are `laws.tv_threshold` at 4,000 chains (false-failure rate
1e-3 per comparison; a bias of twice the threshold, about 0.06 here, fails with probability
0.999). Every test runs on both backends (hf and vllm, the `sampler` fixture of
tests/backend_fixtures.py) with the same thresholds, on a model with head dimension 64 so that
vLLM's CPU kernels take it.
"""

from __future__ import annotations

import numpy as np
import pytest
from backend_fixtures import backend_sampler
from exact_chain import NO_EOS, TinyLaw, Tokens, chain_law, tiny_law
from laws import empirical_law, tv, tv_threshold

from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain, sampling_chain

VOCAB, NEW, ALPHA, PROMPT = 4, 3, 4.0, (1,)
CHAINS = 4000


sampler = backend_sampler(seed=4, scale=8.0)  # each test runs on the hf and vllm backends


@pytest.fixture(scope="module")
def law(sampler) -> TinyLaw:  # type: ignore[no-untyped-def]
    """Exact p, q and p^alpha over the 64 sequences, read off the model both backends run."""
    return tiny_law(sampler.model, PROMPT, VOCAB, NO_EOS, NEW, ALPHA)


def empirical(sampler, drivers) -> dict[Tokens, float]:  # type: ignore[no-untyped-def]
    finals: list[Tokens] = []
    sampler.run(drivers, eos_token_ids=(), max_batch=512,
                on_done=lambda key, result: finals.append(tuple(result.sequence.generated.tolist())))
    return empirical_law(finals)  # type: ignore[return-value]


def close(sampled: dict[Tokens, float], exact: dict[Tokens, float]) -> bool:
    return tv(sampled, exact) < tv_threshold(exact, CHAINS)


def power_law(sampler, k: int) -> dict[Tokens, float]:  # type: ignore[no-untyped-def]
    settings = PowerSettings(alpha=ALPHA, max_new_tokens=NEW, blocks=1)
    return empirical(sampler, ((i, power_chain(PROMPT, settings, FixedK(k), np.random.default_rng(i)))
                               for i in range(CHAINS)))


def test_power_sampler_follows_the_exact_chain_to_p_alpha(sampler, law: TinyLaw) -> None:  # type: ignore[no-untyped-def]
    power = law.power()
    assert tv(power, law.tempered()) > 0.3  # the test can tell the two laws apart
    long_chain, short_chain = power_law(sampler, 20), power_law(sampler, 2)
    assert close(long_chain, chain_law(law, 1, "stop", 20))
    assert close(short_chain, chain_law(law, 1, "stop", 2))
    assert tv(chain_law(law, 1, "stop", 20), power) < 0.04  # 0.036: the rest is mixing, not noise
    assert tv(long_chain, law.tempered()) > 0.3
    # more MH steps move the chain closer to the target
    assert tv(short_chain, power) > tv(long_chain, power) + 0.1


def test_temperature_driver_matches_exact_tempered_distribution(sampler, law: TinyLaw) -> None:  # type: ignore[no-untyped-def]
    sampled = empirical(sampler, ((i, sampling_chain(PROMPT, NEW, 1 / ALPHA, np.random.default_rng(i)))
                                  for i in range(CHAINS)))
    assert close(sampled, law.tempered())
    assert tv(sampled, law.power()) > 0.3


def test_alpha_one_temperature_one_reproduces_base_model(sampler, law: TinyLaw) -> None:  # type: ignore[no-untyped-def]
    sampled = empirical(sampler, ((i, sampling_chain(PROMPT, NEW, 1.0, np.random.default_rng(i)))
                                  for i in range(CHAINS)))
    assert close(sampled, law.base())
