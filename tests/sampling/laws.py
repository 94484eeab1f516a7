"""Empirical laws of sampled completions, and how far they may lie from exact laws (TV thresholds).

A distribution test draws n independent chains (each its own seeded stream) and compares their
empirical law with an exact law (the chain's law at that k from `exact_chain`, or a proposal's
law) in total-variation distance. Under the null hypothesis, that the sampler draws exactly from
the reference, that TV is pure sampling noise, whose distribution depends only on the reference
and n. `tv_threshold` is its (1 - FALSE_RATE) quantile, found by simulating multinomial samples at
a fixed seed: a correct sampler fails a comparison with probability FALSE_RATE (over the choice of
chain seeds; at fixed seeds every run of the suite gives the same answer).

Power: if the sampler's law is at TV d from the reference, the empirical TV is at least d minus
the noise around the sampler's own law, which stays under about the same threshold with the same
probability. So a bias d > 2 * threshold fails with probability at least 1 - FALSE_RATE
(`detectable_bias`); smaller biases fail more often than correct samplers do, not surely.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np

FALSE_RATE = 1e-3  # per comparison
SIMULATIONS = 10_000
_CHUNK = 2_000


def tv(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> float:
    """Total-variation distance between two laws given as {outcome: probability}."""
    return 0.5 * sum(abs(a.get(x, 0.0) - b.get(x, 0.0)) for x in set(a) | set(b))


def empirical_law(outcomes: Iterable[Hashable]) -> dict[Hashable, float]:
    """{outcome: frequency} of a sample."""
    counts = Counter(outcomes)
    n = sum(counts.values())
    return {x: c / n for x, c in counts.items()}


def completion_law(sampler: Any, drivers: Iterable[tuple[Any, Any]], eos: tuple[int, ...], new_tokens: int,
                   prompt: tuple[int, ...], max_batch: int) -> dict[Hashable, float]:
    """Law of the chains' completions on ``sampler`` (tests/backend_fixtures.py).

    Fails on any cut-short completion (neither EOS nor ``new_tokens`` long) or altered prompt.
    """
    finals: list[tuple[int, ...]] = []

    def keep(key: Any, result: Any) -> None:
        completion = tuple(result.completion_ids.tolist())
        assert result.stopped_at_eos or len(completion) == new_tokens, f"cut short: {completion}"
        assert result.sequence.tokens[: len(prompt)].tolist() == list(prompt)
        finals.append(completion)

    sampler.run(drivers, eos_token_ids=eos, max_batch=max_batch, on_done=keep)
    return empirical_law(finals)


@functools.lru_cache(maxsize=64)
def _threshold(probabilities: tuple[float, ...], n: int, false_rate: float, simulations: int) -> float:
    p = np.array([v for v in probabilities if v > 0], dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(20261207)
    distances = []
    for start in range(0, simulations, _CHUNK):
        counts = rng.multinomial(n, p, size=min(_CHUNK, simulations - start))
        distances.append(0.5 * np.abs(counts / n - p).sum(1))
    return float(np.quantile(np.concatenate(distances), 1 - false_rate))


def tv_threshold(law: Mapping[Hashable, float], n: int, false_rate: float = FALSE_RATE,
                 simulations: int = SIMULATIONS) -> float:
    """The (1 - false_rate) quantile of TV(empirical law of n draws from ``law``, ``law``).

    Simulated at a fixed seed, so the same law and n always give the same threshold (cached:
    several tests compare with one law).
    """
    return _threshold(tuple(sorted(float(v) for v in law.values())), n, false_rate, simulations)


def detectable_bias(law: Mapping[Hashable, float], n: int, false_rate: float = FALSE_RATE) -> float:
    """A TV bias from ``law`` that a test at `tv_threshold` catches with probability >= 1 - false_rate."""
    return 2 * tv_threshold(law, n, false_rate)
