"""Block-wise Metropolis-Hastings power sampling (DESIGN §1), as an engine driver.

Target pi(x) ∝ p(x)^alpha over whole completions; proposal q = softmax(logits * alpha), i.e.
temperature 1/alpha. After each block extension, k proposals each resample the suffix from a
uniform position i and are accepted with probability min(1, r),

    log r = alpha * (log p(prop[i:]) - log p(cur[i:])) + (log q(cur[i:]) - log q(prop[i:])),

where both sums run over each sequence's *whole* suffix, so a proposal that stops at EOS early is
compared with the full current suffix (the official code truncates the latter).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dps_cli.sampling.policies import KPolicy
from dps_cli.sampling.requests import Completion, Prefill, PrefillResult, Request, Sequence
from dps_cli.sampling.results import ChainResult, CheckpointRecord


@dataclass(frozen=True)
class PowerSettings:
    alpha: float
    max_new_tokens: int
    blocks: int
    checkpoints: tuple[int, ...] = ()
    hidden: bool = False
    eos_token_ids: tuple[int, ...] = ()

    @property
    def block_size(self) -> int:
        return self.max_new_tokens // self.blocks


def log_accept_ratio(current: Sequence, proposal: Sequence, start: int, alpha: float) -> float:
    """MH log acceptance ratio for replacing ``current[start:]`` with ``proposal[start:]``."""
    j = start - current.prompt_len
    logp_cur = float(np.sum(current.logp_base[j:], dtype=np.float64))
    logp_prop = float(np.sum(proposal.logp_base[j:], dtype=np.float64))
    logq_cur = float(np.sum(current.logq_proposal[j:], dtype=np.float64))
    logq_prop = float(np.sum(proposal.logq_proposal[j:], dtype=np.float64))
    return alpha * (logp_prop - logp_cur) + (logq_cur - logq_prop)


def trajectory_features(sequence: Sequence) -> tuple[float, float, float]:
    """(perplexity, mean entropy of p, mean max p) over the generated tokens."""
    if sequence.logp_base.size == 0:
        return 1.0, 0.0, 1.0
    perplexity = math.exp(float(np.mean(-sequence.logp_base, dtype=np.float64)))
    return perplexity, float(np.mean(sequence.entropy)), float(np.mean(sequence.max_prob))


class _HiddenMean:
    """Running mean over trajectories (block extensions and proposals) of their hidden means."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, completion: Completion) -> None:
        if completion.hidden_mean is None:
            return
        self.total = completion.hidden_mean.astype(np.float64) + (0 if self.total is None else self.total)
        self.count += 1

    def value(self) -> np.ndarray | None:
        return None if self.total is None else (self.total / self.count).astype(np.float32)


def power_chain(prompt_ids: tuple[int, ...], settings: PowerSettings, policy: KPolicy,
                rng: np.random.Generator) -> Generator[Any, Any, ChainResult]:
    """One chain of power sampling; k follows ``policy`` (fixed k or DPS)."""
    started = time.perf_counter()
    prefill: PrefillResult = yield Prefill(prompt_ids, want_hidden=settings.hidden)
    seq, c = prefill.sequence, prefill.sequence.prompt_len
    temperature = 1.0 / settings.alpha
    eos = set(settings.eos_token_ids)
    k, attempted, accepted, generated = policy.initial_k, 0, 0, 0
    hidden = _HiddenMean()
    schedule: list[int] = []
    records: list[CheckpointRecord] = []
    for block in range(1, settings.blocks + 1):
        extension: Completion = yield Request(seq, len(seq), settings.block_size, temperature, rng,
                                              settings.hidden)
        seq, generated = extension.sequence, generated + extension.new_tokens
        hidden.add(extension)
        schedule.append(k)
        for _ in range(k):
            t = len(seq)
            start = int(rng.integers(c, t))  # uniform over [c, t-1]
            proposal: Completion = yield Request(seq, start, t - start, temperature, rng, settings.hidden)
            generated += proposal.new_tokens
            attempted += 1
            hidden.add(proposal)
            log_u = math.log(max(rng.random(), 1e-300))
            if log_u < log_accept_ratio(seq, proposal.sequence, start, settings.alpha):
                seq, accepted = proposal.sequence, accepted + 1
        if block in settings.checkpoints:
            perplexity, entropy, confidence = trajectory_features(seq)
            record = CheckpointRecord(
                block=block, k=k, mcmc_perplexity=perplexity, mcmc_entropy=entropy,
                mcmc_self_confidence=confidence, acceptance_ratio=accepted / max(attempted, 1),
                question_time_sec=time.perf_counter() - started, current_k=k,
                hidden=hidden.value(), question_embedding=prefill.prompt_hidden_mean,
            )
            new_k, p_enough = yield from policy.decide(record)
            records.append(replace(record, p_enough=p_enough, escalated=new_k > k))
            k = new_k
        if eos.intersection(seq.generated.tolist()):
            break
    return _finish(seq, prefill, schedule, attempted, accepted, generated, records, eos, started)


def _finish(seq: Sequence, prefill: PrefillResult, schedule: list[int], attempted: int, accepted: int,
            generated: int, records: list[CheckpointRecord], eos: set[int], started: float) -> ChainResult:
    completion, stopped = truncate_at_eos(seq.generated, eos)
    return ChainResult(
        sequence=seq, completion_ids=completion, k_schedule=schedule, proposals_attempted=attempted,
        proposals_accepted=accepted, tokens_generated=generated, stopped_at_eos=stopped,
        wall_time_s=time.perf_counter() - started, checkpoints=records,
        question_embedding=prefill.prompt_hidden_mean,
    )


def truncate_at_eos(tokens: np.ndarray, eos: set[int]) -> tuple[np.ndarray, bool]:
    """Tokens up to and including the first EOS, and whether there was one."""
    for i, token in enumerate(tokens.tolist()):
        if token in eos:
            return tokens[: i + 1], True
    return tokens, False


def sampling_chain(prompt_ids: tuple[int, ...], max_new_tokens: int, temperature: float,
                   rng: np.random.Generator, eos_token_ids: tuple[int, ...] = (),
                   hidden: bool = False) -> Generator[Any, Any, ChainResult]:
    """Plain sampling at ``temperature`` (0 = greedy): one request of ``max_new_tokens``."""
    started = time.perf_counter()
    prefill: PrefillResult = yield Prefill(prompt_ids, want_hidden=hidden)
    completion: Completion = yield Request(prefill.sequence, len(prefill.sequence), max_new_tokens,
                                           temperature, rng, hidden)
    return _finish(completion.sequence, prefill, [], 0, 0, completion.new_tokens, [],
                   set(eos_token_ids), started)
