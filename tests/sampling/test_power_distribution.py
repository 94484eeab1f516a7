"""Statistical tests of the drivers against exact distributions enumerated through the model.

A 4-token vocabulary with EOS disabled, a 1-token prompt and 3 new tokens give 64 sequences whose
exact probabilities we compute with one forward pass; thousands of chains are then compared with
them in total-variation distance. Every test runs on both backends (hf and vllm, the `sampler`
fixture of tests/backend_fixtures.py) with the same thresholds, on a model with head dimension 64
so that vLLM's CPU kernels take it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from backend_fixtures import backend_sampler

from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain, sampling_chain

VOCAB, NEW, ALPHA, PROMPT = 4, 3, 4.0, (1,)
CHAINS = 4000


sampler = backend_sampler(seed=4, scale=8.0)  # each test runs on the hf and vllm backends


@pytest.fixture(scope="module")
def model(sampler):  # type: ignore[no-untyped-def]
    return sampler.model


@pytest.fixture(scope="module")
def exact(model):  # type: ignore[no-untyped-def]
    """Exact power (p^alpha normalized), tempered (product of softmax(logits*alpha)) and base laws."""
    seqs = list(itertools.product(range(VOCAB), repeat=NEW))
    ids = torch.tensor([[*PROMPT, *s] for s in seqs])
    with torch.no_grad():
        logits = model(ids).logits.float()[:, :-1]  # (64, 3, V): position t predicts token t+1
    chosen = ids[:, 1:, None]
    logp = torch.log_softmax(logits, -1).gather(-1, chosen).squeeze(-1).sum(-1).double()
    logq = torch.log_softmax(logits * ALPHA, -1).gather(-1, chosen).squeeze(-1).sum(-1).double()
    return {
        "seqs": {s: i for i, s in enumerate(seqs)},
        "power": torch.softmax(ALPHA * logp, 0).numpy(),
        "tempered": logq.exp().numpy(),
        "base": logp.exp().numpy(),
    }


def empirical(sampler, exact, drivers) -> np.ndarray:  # type: ignore[no-untyped-def]
    finals: list[tuple[int, ...]] = []
    sampler.run(drivers, eos_token_ids=(), max_batch=512,
                on_done=lambda key, result: finals.append(tuple(result.sequence.generated.tolist())))
    counts = np.bincount([exact["seqs"][s] for s in finals], minlength=len(exact["seqs"]))
    return counts / counts.sum()


def tv(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def power_law(sampler, exact, k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    settings = PowerSettings(alpha=ALPHA, max_new_tokens=NEW, blocks=1)
    return empirical(sampler, exact, ((i, power_chain(PROMPT, settings, FixedK(k), np.random.default_rng(i)))
                                    for i in range(CHAINS)))


def test_power_sampler_matches_exact_power_distribution(sampler, exact) -> None:  # type: ignore[no-untyped-def]
    assert tv(exact["power"], exact["tempered"]) > 0.3  # the test can tell the two laws apart
    long_chain = power_law(sampler, exact, k=20)
    short_chain = power_law(sampler, exact, k=2)
    assert tv(long_chain, exact["power"]) < 0.05
    assert tv(long_chain, exact["tempered"]) > 0.3
    # more MH steps move the chain closer to the target
    assert tv(short_chain, exact["power"]) > tv(long_chain, exact["power"]) + 0.1


def test_temperature_driver_matches_exact_tempered_distribution(sampler, exact) -> None:  # type: ignore[no-untyped-def]
    law = empirical(sampler, exact, ((i, sampling_chain(PROMPT, NEW, 1 / ALPHA, np.random.default_rng(i)))
                                   for i in range(CHAINS)))
    assert tv(law, exact["tempered"]) < 0.05
    assert tv(law, exact["power"]) > 0.3


def test_alpha_one_temperature_one_reproduces_base_model(sampler, exact) -> None:  # type: ignore[no-untyped-def]
    law = empirical(sampler, exact, ((i, sampling_chain(PROMPT, NEW, 1.0, np.random.default_rng(i)))
                                   for i in range(CHAINS)))
    assert tv(law, exact["base"]) < 0.05
