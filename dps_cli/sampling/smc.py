"""Power-SMC (DESIGN §1): sequential Monte Carlo towards p^alpha, as an engine driver.

Target: pi(x) ∝ p(x)^alpha over whole completions x, each ended by EOS or of exactly
max_new_tokens tokens (the same space as the MH sampler in `power`). N particles start empty with
log weight 0 and grow in rounds of at most m tokens, all live particles of a round in one
`RequestGroup`. A particle that has ended at EOS or is full is frozen: it gets no tokens and its
weight does not change. After a round, when ESS = (sum e^w)^2 / sum e^(2w) < rho*N, the particles
are resampled systematically in proportion to e^w, ``log_z`` gains the log mean weight, and the
weights reset to 0; at the end ``log_z`` gains the log mean of the final weights and one particle
is drawn in proportion to them.

Why this is the right weight. Write a(r) for the exponent in force during round r (alpha
throughout without bridging). The round samples at temperature 1/a, i.e. from
q(v | prefix) = p(v | prefix)^a / sum_u p(u | prefix)^a, and each new token t adds
a*log p(t) - log q(t) = log sum_u p(u | prefix)^a: the increment does not depend on which token
was drawn, which makes q the prefix-only proposal of least weight variance. Between rounds r-1
and r, when the exponent changes from a to a' (bridging), every particle, frozen or not, adds
(a' - a) * log p(its tokens so far); after the last round a final step of the same kind raises
a to alpha if the bridge has not reached it yet. Following one particle's ancestry, token j
(drawn in round s) then collects log p(x_j) with coefficient a(s) + sum of the later changes =
alpha, so the product of a path's incremental weights is p(x)^alpha / Q(x), where Q(x) is the
probability of drawing x by the proposals. This is a Feynman-Kac flow whose final unnormalized
target is p(x)^alpha, and for such a flow the product over resampling times of the mean weight
(times the mean final weight) is an unbiased estimate of its normalizer Z = sum_x p(x)^alpha
(Del Moral 2004; with the ESS rule deciding when to resample, Whiteley, Lee & Heine 2016), for
any unbiased resampling scheme such as systematic resampling. Intermediate targets (p^a of the
prefix) only change the variance; the final target stays p^alpha. The drawn particle's law tends
to pi as N grows (at N = 1 it is the proposal's law, temperature 1/alpha without bridging).

Bridging (``bridge`` = M > 0): the exponent rises linearly from 1 to alpha over the first M
tokens and changes only at round boundaries: round r, which starts after r*m tokens, uses
a = 1 + (alpha - 1) * min(1, r*m / M). The first round therefore samples at temperature 1 with
zero weights, and the increments are spread over several rounds instead of hitting the weights at
once, which keeps the ESS up at the start where the particles have said little.

Reproducibility: particle slot i owns a random stream spawned from the chain's ``rng``; after
resampling, slot i continues its new ancestor's sequence with its own stream. Resampling and the
final draw use the chain's ``rng``. A chain's tokens and weights therefore depend only on its
seed, not on what shares its batches. Children share their parent's `Sequence` (the same object:
on ``hf`` its key/value cache, on ``vllm`` its prefix in the prefix cache), never a copy.

Cost on ``hf``: as for any request, each round's request copies its prefix's cache into a batch
row and its completion copies the row back out, so a particle moves O(T^2 / m) cache columns over
T tokens; a larger chunk m means fewer copies and fewer chances to resample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dps_cli.sampling.power import check_completion, has_ended, truncate_at_eos
from dps_cli.sampling.requests import (
    Completion,
    Prefill,
    PrefillResult,
    Request,
    RequestGroup,
    Sequence,
)
from dps_cli.sampling.results import ChainResult

__all__ = ["SMCResult", "SMCSettings", "effective_sample_size", "exponent_at", "smc_chain",
           "systematic_resample"]


@dataclass(frozen=True)
class SMCSettings:
    """One Power-SMC chain: target p^alpha, N particles in rounds of ``chunk`` tokens.

    ``ess_threshold`` is rho: resample after a round when ESS < rho * N (rho = 1 resamples after
    every round whose weights differ; a rho with rho * N <= 1 never resamples). ``bridge`` is M,
    the number of tokens over which the exponent rises from 1 to alpha (0: alpha from the start).
    """

    alpha: float
    max_new_tokens: int
    particles: int
    chunk: int
    ess_threshold: float
    bridge: int = 0
    eos_token_ids: tuple[int, ...] = ()
    hidden: bool = False

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"alpha must be positive, not {self.alpha}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.particles < 1:
            raise ValueError(f"the number of particles must be at least 1, not {self.particles}")
        if self.chunk < 1:
            raise ValueError(f"the chunk (tokens per round) must be at least 1, not {self.chunk}")
        if not 0 < self.ess_threshold <= 1:
            raise ValueError(f"the ESS threshold must lie in (0, 1], not {self.ess_threshold}")
        if self.bridge < 0:
            raise ValueError(f"the bridge length must be 0 or more tokens, not {self.bridge}")


@dataclass(frozen=True)
class SMCResult(ChainResult):
    """A `ChainResult` for the drawn particle, plus every particle and the SMC estimates.

    ``completion_ids``, ``sequence`` and ``stopped_at_eos`` are the drawn particle's;
    ``tokens_generated`` counts every particle's sampled tokens; ``logq_bound`` is the largest
    over particles (the weights sum log q over each whole completion).
    """

    particles: tuple[np.ndarray, ...] = ()  # every particle's completion ids, int64
    log_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) float64, final
    log_z: float = 0.0  # estimate of log sum_x p(x)^alpha
    resamples: int = 0
    drawn: int = 0  # index of the drawn particle


def exponent_at(tokens: int, settings: SMCSettings) -> float:
    """The exponent in force for a round that starts after ``tokens`` tokens (module docstring)."""
    if settings.bridge == 0 or tokens >= settings.bridge:
        return settings.alpha
    return 1.0 + (settings.alpha - 1.0) * tokens / settings.bridge


def effective_sample_size(log_weights: np.ndarray) -> float:
    """(sum e^w)^2 / sum e^(2w), computed stably; N when all weights are equal."""
    shifted = log_weights - np.max(log_weights)
    w = np.exp(shifted)
    return float(np.sum(w) ** 2 / np.sum(w * w))


def log_mean_exp(log_weights: np.ndarray) -> float:
    top = float(np.max(log_weights))
    if not math.isfinite(top):
        raise FloatingPointError(f"particle log weights are not finite (largest {top})")
    return top + math.log(float(np.mean(np.exp(log_weights - top))))


def normalized(log_weights: np.ndarray) -> np.ndarray:
    w: np.ndarray = np.exp(log_weights - np.max(log_weights))
    return w / float(np.sum(w))


def systematic_resample(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N ancestor indices: one uniform u, points (u + i) / N on the weights' CDF.

    Each particle gets floor or ceil of N * its normalized weight children, in expectation
    exactly N * W_i (unbiased), with less noise than multinomial resampling.
    """
    n = len(log_weights)
    cdf = np.cumsum(normalized(log_weights))
    points = (rng.random() + np.arange(n)) / n
    ancestors: np.ndarray = np.minimum(np.searchsorted(cdf, points * cdf[-1], side="right"), n - 1)
    return ancestors.astype(np.int64)


@dataclass
class _Particles:
    """The particle system of one chain between rounds."""

    sequences: list[Sequence]
    log_weights: np.ndarray  # (N,) float64
    rngs: list[np.random.Generator]
    generated: int = 0
    resamples: int = 0
    log_z: float = 0.0

    def new_tokens(self, i: int) -> int:
        return len(self.sequences[i]) - self.sequences[i].prompt_len

    def log_p(self, i: int) -> float:
        return float(np.sum(self.sequences[i].logp_base, dtype=np.float64))

    def reweight(self, old: float, new: float) -> None:
        """Change every particle's target from p^old to p^new (bridging)."""
        if new != old:
            self.log_weights += np.array([(new - old) * self.log_p(i) for i in range(len(self.sequences))])

    def resample(self, rng: np.random.Generator) -> None:
        self.log_z += log_mean_exp(self.log_weights)
        ancestors = systematic_resample(self.log_weights, rng)
        self.sequences = [self.sequences[a] for a in ancestors]  # shared, not copied
        self.log_weights = np.zeros(len(self.sequences))
        self.resamples += 1


def _round(particles: _Particles, live: list[int], settings: SMCSettings,
           exponent: float) -> Generator[Any, Any, None]:
    """Extend every live particle by up to ``chunk`` tokens at temperature 1/exponent."""
    requests = tuple(
        Request(particles.sequences[i], len(particles.sequences[i]),
                min(settings.chunk, settings.max_new_tokens - particles.new_tokens(i)),
                1.0 / exponent, particles.rngs[i])
        for i in live)
    completions: tuple[Completion, ...] = yield RequestGroup(requests)
    for i, request, completion in zip(live, requests, completions, strict=True):
        j = request.start - request.base.prompt_len
        sequence = completion.sequence
        logp = float(np.sum(sequence.logp_base[j:], dtype=np.float64))
        logq = float(np.sum(sequence.logq_proposal[j:], dtype=np.float64))
        particles.log_weights[i] += exponent * logp - logq
        particles.sequences[i] = sequence
        particles.generated += completion.new_tokens


def smc_chain(prompt_ids: tuple[int, ...], settings: SMCSettings,
              rng: np.random.Generator) -> Generator[Any, Any, SMCResult]:
    """One Power-SMC chain (module docstring); returns the drawn particle and all the others."""
    started = time.perf_counter()
    prefill: PrefillResult = yield Prefill(prompt_ids, want_hidden=settings.hidden)
    eos = frozenset(settings.eos_token_ids)
    n = settings.particles
    seeds = rng.integers(0, 2**63 - 1, size=n)
    particles = _Particles([prefill.sequence] * n, np.zeros(n), [np.random.default_rng(int(s)) for s in seeds])
    exponent = exponent_at(0, settings)
    for start in range(0, settings.max_new_tokens, settings.chunk):
        live = [i for i in range(n) if not has_ended(particles.sequences[i], eos)
                and particles.new_tokens(i) < settings.max_new_tokens]
        if not live:
            break
        new_exponent = exponent_at(start, settings)
        particles.reweight(exponent, new_exponent)
        exponent = new_exponent
        yield from _round(particles, live, settings, exponent)
        if effective_sample_size(particles.log_weights) < settings.ess_threshold * n:
            particles.resample(rng)
    particles.reweight(exponent, settings.alpha)
    return _finish(particles, prefill, eos, settings, rng, started)


def _finish(particles: _Particles, prefill: PrefillResult, eos: frozenset[int], settings: SMCSettings,
            rng: np.random.Generator, started: float) -> SMCResult:
    completions = []
    for sequence in particles.sequences:
        completion, stopped = truncate_at_eos(sequence.generated, eos)
        check_completion(completion, stopped, settings.max_new_tokens)
        if len(completion) != len(sequence.generated):
            raise RuntimeError("a particle grew past its EOS token")
        completions.append(completion)
    log_z = particles.log_z + log_mean_exp(particles.log_weights)
    drawn = int(rng.choice(len(completions), p=normalized(particles.log_weights)))
    chosen = particles.sequences[drawn]
    return SMCResult(
        sequence=chosen, completion_ids=completions[drawn], k_schedule=[], proposals_attempted=0,
        proposals_accepted=0, tokens_generated=particles.generated,
        stopped_at_eos=has_ended(chosen, eos), wall_time_s=time.perf_counter() - started,
        checkpoints=[], question_embedding=prefill.prompt_hidden_mean,
        logq_bound=max(s.max_suffix_logq_bound() for s in particles.sequences),
        particles=tuple(completions), log_weights=particles.log_weights.copy(), log_z=log_z,
        resamples=particles.resamples, drawn=drawn,
    )
