"""Block-wise Metropolis-Hastings power sampling (DESIGN §1), as an engine driver.

Target pi(x) ∝ p(x)^alpha over whole completions x, each either ended by EOS or of exactly
max_new_tokens tokens; proposal q = softmax(logits * alpha), i.e. temperature 1/alpha.

Block b has target length L_b = c + b*S (c = prompt length, S = block size). A state that has not
ended is first extended towards L_b. Then k proposals each keep ``cur[:i]`` for i uniform over
[c, t_cur - 1] and resample the rest with at most L_b - i tokens, stopping at EOS, and are accepted
with probability min(1, r):

    log r = alpha * (log p(prop[i:]) - log p(cur[i:])) + (log q(cur[i:]) - log q(prop[i:]))
            + log((t_cur - c) / (t_prop - c))

Why each part:
- Both sums run over each sequence's *whole* suffix, so a proposal that stops at EOS early is
  compared with the full current suffix (the official code truncates the latter).
- Regenerating up to L_b rather than up to t_cur lets a proposal lengthen a state that ended at
  EOS; otherwise such a move has no reverse, and replacing the final EOS by any other token has
  log r = 0 exactly (q = p^alpha / Z), which leaves completions cut short.
- The last term is the ratio of the index choices, 1/(t_cur - c) forward against 1/(t_prop - c)
  back; it vanishes when the lengths agree, as they always do without EOS.

With these, each block's moves leave p^alpha over completions of length at most L_b - c invariant.
After the block in which the state ends (`AFTER_EOS_MODES`):
- ``"stop"`` ends the chain: the published algorithm and the cost the paper assumes. It keeps
  block b's target, p^alpha over completions no longer than L_b, so it is biased even with
  unlimited proposals (README).
- ``"continue"`` keeps running MH at the later blocks' target lengths: exact in the limit, at k
  proposals per remaining block.
- ``"jump"`` runs one MH block at the final length L_B = c + max_new_tokens with the chain's
  current k, then ends the chain (later DPS checkpoints are not visited). That block's moves
  leave p^alpha over all completions invariant and can reach any of them, so it too is exact in
  the limit, at k proposals in all.
A state that ends in the last block is already at L_B: every mode ends there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dps_cli.errors import DpsError
from dps_cli.sampling.policies import KPolicy
from dps_cli.sampling.requests import Completion, Prefill, PrefillResult, Request, Sequence
from dps_cli.sampling.results import ChainResult, CheckpointRecord
from dps_cli.sampling.settings import PowerSettings

__all__ = ["NonFiniteRatio", "PowerSettings", "log_accept_ratio", "power_chain", "sampling_chain", "truncate_at_eos"]

class NonFiniteRatio(DpsError):
    """An MH log acceptance ratio that is NaN: a comparison with it would silently reject."""


def log_accept_ratio(current: Sequence, proposal: Sequence, start: int, alpha: float) -> float:
    """MH log acceptance ratio for replacing ``current[start:]`` with ``proposal[start:]``.

    Includes the index-choice term log((t_cur - c) / (t_prop - c)) (module docstring). A NaN
    ratio (a NaN or infinite log-probability on either side) raises `NonFiniteRatio`: compared
    with a uniform it would reject every proposal and freeze the chain without a word.
    """
    c = current.prompt_len
    j = start - c
    logp_cur = float(np.sum(current.logp_base[j:], dtype=np.float64))
    logp_prop = float(np.sum(proposal.logp_base[j:], dtype=np.float64))
    logq_cur = float(np.sum(current.logq_proposal[j:], dtype=np.float64))
    logq_prop = float(np.sum(proposal.logq_proposal[j:], dtype=np.float64))
    index_term = math.log((len(current) - c) / (len(proposal) - c))
    log_r = alpha * (logp_prop - logp_cur) + (logq_cur - logq_prop) + index_term
    if math.isnan(log_r):
        raise NonFiniteRatio(
            f"The MH acceptance ratio of a proposal from position {start} is NaN (log p {logp_cur:.4g} -> "
            f"{logp_prop:.4g}, log q {logq_cur:.4g} -> {logq_prop:.4g}); the sampler refuses to go on.")
    return log_r


def has_ended(sequence: Sequence, eos: frozenset[int]) -> bool:
    """Whether the generated part ends with an EOS token (the engine never samples past one)."""
    return len(sequence) > sequence.prompt_len and int(sequence.tokens[-1]) in eos


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


@dataclass
class _ChainState:
    """What one chain carries across blocks: its current state and its running counts."""

    seq: Sequence
    k: int
    attempted: int = 0
    accepted: int = 0
    generated: int = 0
    logq_bound: float = 0.0  # the largest `max_suffix_logq_bound` of any sequence compared so far

    def saw(self, completion: Completion) -> None:
        """Count a completion's tokens and its log q bound (it enters an MH ratio)."""
        self.generated += completion.new_tokens
        self.logq_bound = max(self.logq_bound, completion.sequence.max_suffix_logq_bound())


def _mh_block(state: _ChainState, target_len: int, settings: PowerSettings, eos: frozenset[int],
              rng: np.random.Generator, hidden: _HiddenMean) -> Generator[Any, Any, None]:
    """Extend an unended state towards ``target_len``, then run ``state.k`` MH proposals."""
    temperature = 1.0 / settings.alpha
    c = state.seq.prompt_len
    if not has_ended(state.seq, eos) and len(state.seq) < target_len:
        extension: Completion = yield Request(state.seq, len(state.seq), target_len - len(state.seq),
                                              temperature, rng, settings.hidden)
        state.seq = extension.sequence
        state.saw(extension)
        hidden.add(extension)
    for _ in range(state.k):
        start = int(rng.integers(c, len(state.seq)))  # uniform over [c, t_cur - 1]
        proposal: Completion = yield Request(state.seq, start, target_len - start, temperature, rng,
                                             settings.hidden)
        state.saw(proposal)
        state.attempted += 1
        hidden.add(proposal)
        log_u = math.log(max(rng.random(), 1e-300))
        if log_u < log_accept_ratio(state.seq, proposal.sequence, start, settings.alpha):
            state.seq, state.accepted = proposal.sequence, state.accepted + 1


def power_chain(prompt_ids: tuple[int, ...], settings: PowerSettings, policy: KPolicy,
                rng: np.random.Generator) -> Generator[Any, Any, ChainResult]:
    """One chain of power sampling; k follows ``policy`` (fixed k or DPS)."""
    started = time.perf_counter()
    prefill: PrefillResult = yield Prefill(prompt_ids, want_hidden=settings.hidden)
    c = prefill.sequence.prompt_len
    eos = frozenset(settings.eos_token_ids)
    state = _ChainState(prefill.sequence, policy.initial_k)
    hidden = _HiddenMean()
    schedule: list[int] = []
    records: list[CheckpointRecord] = []
    for block in range(1, settings.blocks + 1):
        schedule.append(state.k)
        yield from _mh_block(state, settings.target_length(c, block), settings, eos, rng, hidden)
        if block in settings.checkpoints:
            perplexity, entropy, confidence = trajectory_features(state.seq)
            record = CheckpointRecord(
                block=block, k=state.k, mcmc_perplexity=perplexity, mcmc_entropy=entropy,
                mcmc_self_confidence=confidence,
                acceptance_ratio=state.accepted / max(state.attempted, 1),
                question_time_sec=time.perf_counter() - started, current_k=state.k,
                hidden=hidden.value(), question_embedding=prefill.prompt_hidden_mean,
            )
            new_k, p_enough = yield from policy.decide(record)
            records.append(replace(record, p_enough=p_enough, escalated=new_k > state.k))
            state.k = new_k
        if block < settings.blocks and has_ended(state.seq, eos) and settings.after_eos != "continue":
            if settings.after_eos == "jump":
                schedule.append(state.k)
                final_len = settings.target_length(c, settings.blocks)
                yield from _mh_block(state, final_len, settings, eos, rng, hidden)
            break
    return _finish(state, prefill, schedule, records, eos, started, settings.max_new_tokens)


def _finish(state: _ChainState, prefill: PrefillResult, schedule: list[int],
            records: list[CheckpointRecord], eos: frozenset[int], started: float,
            max_new_tokens: int) -> ChainResult:
    completion, stopped = truncate_at_eos(state.seq.generated, eos)
    check_completion(completion, stopped, max_new_tokens)
    return ChainResult(
        sequence=state.seq, completion_ids=completion, k_schedule=schedule,
        proposals_attempted=state.attempted, proposals_accepted=state.accepted,
        tokens_generated=state.generated, stopped_at_eos=stopped,
        wall_time_s=time.perf_counter() - started, checkpoints=records,
        question_embedding=prefill.prompt_hidden_mean, logq_bound=state.logq_bound,
    )


class CutShortCompletion(RuntimeError):
    """A completion neither ended by EOS nor of full length: a sampler bug, never user error."""


def check_completion(completion: np.ndarray, stopped_at_eos: bool, max_new_tokens: int) -> None:
    """Fail loudly unless the completion ends with EOS or has exactly ``max_new_tokens`` tokens."""
    if not stopped_at_eos and len(completion) != max_new_tokens:
        raise CutShortCompletion(f"completion of {len(completion)} tokens has no EOS and is shorter "
                                 f"than max_new_tokens={max_new_tokens}")


def truncate_at_eos(tokens: np.ndarray, eos: frozenset[int] | set[int]) -> tuple[np.ndarray, bool]:
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
    state = _ChainState(completion.sequence, k=0)
    state.saw(completion)
    return _finish(state, prefill, [], [], frozenset(eos_token_ids), started, max_new_tokens)
