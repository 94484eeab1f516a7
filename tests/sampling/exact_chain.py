"""The exact law of the power sampler's Markov chain on a tiny vocabulary, by transition matrices.

DESIGN §1's algorithm, written as matrices instead of samples: for each block the MH kernel over
every state of that block's horizon (completions that ended at EOS, or unended prefixes of the
horizon's length), the extension kernel between blocks, and the three `--after-eos` rules. With it
a test can check (a) that the chain's limit is exactly p^alpha, with no sampling noise, and (b)
that the engine's empirical law after k proposals per block is this chain's law after k, for any
k. It also gives the expected tokens a chain generates (extensions and proposals, what a run
records as ``tokens_generated``), so the modes' costs compare without sampling noise either.

Two generalisations serve the harder tests: a DPS ``policy`` that sets k from the state at a
checkpoint (a deterministic controller, so the chain is Markov on (state, k)), and a ``ratio``
table of log q used in the acceptance ratio in place of the proposal's own (what the vLLM
backend computes from the top-K log-probabilities); the chain then targets another law, which
the test bounds by the recorded ``logq_bound``.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

Tokens = tuple[int, ...]
#: (block, state, k) -> k for the following blocks, applied after each checkpoint block.
Policy = Callable[[int, Tokens, int], int]
NO_EOS = -1  # a ``TinyLaw.eos`` no token equals: every completion has the full length


@dataclass(frozen=True)
class TinyLaw:
    """Next-token log-probs of p and q = softmax(alpha * logits) after every prefix.

    ``ratio`` (default: ``logq``) is the log q the acceptance ratio uses; proposals are always
    drawn from ``logq``.
    """

    logp: dict[Tokens, np.ndarray]
    logq: dict[Tokens, np.ndarray]
    vocab: int
    eos: int
    new_tokens: int
    alpha: float
    ratio: dict[Tokens, np.ndarray] | None = None

    def suffix(self, table: dict[Tokens, np.ndarray], x: Tokens, start: int) -> float:
        return float(sum(table[x[:j]][x[j]] for j in range(start, len(x))))

    def states(self, horizon: int) -> list[Tokens]:
        """Every completion at this horizon: ended at its first EOS, or ``horizon`` tokens long."""
        out = set()
        for s in itertools.product(range(self.vocab), repeat=horizon):
            out.add(s[: s.index(self.eos) + 1] if self.eos in s else s)
        return sorted(out, key=lambda x: (len(x), x))

    def power(self) -> dict[Tokens, float]:
        """Exact p^alpha over the final completions, normalized."""
        states = self.states(self.new_tokens)
        log_w = np.array([self.alpha * self.suffix(self.logp, x, 0) for x in states])
        return dict(zip(states, np.exp(log_w - np.logaddexp.reduce(log_w)), strict=True))

    def tempered(self) -> dict[Tokens, float]:
        """The proposal's own law over final completions (one request of new_tokens)."""
        return {x: math.exp(self.suffix(self.logq, x, 0)) for x in self.states(self.new_tokens)}

    def base(self) -> dict[Tokens, float]:
        """The base model's law over final completions (sampling at temperature 1)."""
        return {x: math.exp(self.suffix(self.logp, x, 0)) for x in self.states(self.new_tokens)}

    def perplexity(self, x: Tokens) -> float:
        """exp(mean -log p) over the state's tokens: the `mcmc_perplexity` checkpoint feature."""
        return math.exp(-self.suffix(self.logp, x, 0) / len(x)) if x else 1.0

    def with_ratio(self, ratio: dict[Tokens, np.ndarray]) -> TinyLaw:
        return replace(self, ratio=ratio)


def tiny_law(model: torch.nn.Module, prompt: Tokens, vocab: int, eos: int, new_tokens: int,
             alpha: float) -> TinyLaw:
    """Read p and q off the model with one forward pass over every full continuation."""
    full = list(itertools.product(range(vocab), repeat=new_tokens))
    ids = torch.tensor([[*prompt, *s] for s in full])
    with torch.no_grad():
        logits = model(ids).logits.double()[:, len(prompt) - 1:-1]  # (V^n, n, V)
    logp = torch.log_softmax(logits, -1).numpy()
    logq = torch.log_softmax(logits * alpha, -1).numpy()
    tables_p: dict[Tokens, np.ndarray] = {}
    tables_q: dict[Tokens, np.ndarray] = {}
    for s, lp, lq in zip(full, logp, logq, strict=True):
        for j in range(new_tokens):
            tables_p[s[:j]], tables_q[s[:j]] = lp[j], lq[j]
    return TinyLaw(tables_p, tables_q, vocab, eos, new_tokens, alpha)


def tv(a: dict[Tokens, float], b: dict[Tokens, float]) -> float:
    """Total-variation distance between two laws over completions."""
    return 0.5 * sum(abs(a.get(x, 0.0) - b.get(x, 0.0)) for x in set(a) | set(b))


def _suffix_sums(law: TinyLaw, table: dict[Tokens, np.ndarray], states: list[Tokens], horizon: int) -> np.ndarray:
    """(S, horizon + 1): the sum of ``table`` over each state's positions j >= i (0 past its end)."""
    out = np.zeros((len(states), horizon + 1))
    for n, x in enumerate(states):
        for i in range(len(x) - 1, -1, -1):
            out[n, i] = out[n, i + 1] + table[x[:i]][x[i]]
    return out


@dataclass(frozen=True)
class Block:
    """One horizon's states, its MH kernel, and the expected tokens of one proposal from each."""

    states: list[Tokens]
    index: dict[Tokens, int]
    kernel: np.ndarray  # (S, S)
    proposal_tokens: np.ndarray  # (S,)


def mh_block(law: TinyLaw, horizon: int) -> Block:
    """One MH proposal at this horizon: i uniform over the state's positions, regenerate, accept."""
    states = law.states(horizon)
    lengths = np.array([len(x) for x in states], dtype=np.float64)
    sp = _suffix_sums(law, law.logp, states, horizon)
    sq = _suffix_sums(law, law.logq, states, horizon)
    sr = sq if law.ratio is None else _suffix_sums(law, law.ratio, states, horizon)
    kernel = np.zeros((len(states), len(states)))
    cost = np.zeros(len(states))
    for i in range(horizon):
        groups: dict[Tokens, list[int]] = defaultdict(list)  # states longer than i, by prefix x[:i]
        for n, x in enumerate(states):
            if len(x) > i:
                groups[x[:i]].append(n)
        for members in groups.values():
            idx = np.array(members)
            q = np.exp(sq[idx, i])  # law of the regenerated state y, same for every x of the group
            log_r = (law.alpha * (sp[idx, i][None, :] - sp[idx, i][:, None]) + sr[idx, i][:, None]
                     - sr[idx, i][None, :] + np.log(lengths[idx][:, None] / lengths[idx][None, :]))
            accept = np.exp(np.minimum(log_r, 0.0))
            weight = q[None, :] / lengths[idx][:, None]  # index i has probability 1/t_x
            kernel[np.ix_(idx, idx)] += weight * accept
            kernel[idx, idx] += (weight * (1 - accept)).sum(1)
            cost[idx] += (q * (lengths[idx] - i)).sum() / lengths[idx]
    return Block(states, {x: n for n, x in enumerate(states)}, kernel, cost)


def mh_kernel(law: TinyLaw, horizon: int) -> tuple[list[Tokens], np.ndarray]:
    """The states of this horizon and the one-proposal MH kernel over them."""
    block = mh_block(law, horizon)
    return block.states, block.kernel


def _extension(law: TinyLaw, prefix: Tokens, block: Block) -> np.ndarray:
    """Law of ``prefix`` extended by the proposal up to the horizon of ``block``."""
    out = np.zeros(len(block.states))
    for y in block.states:
        if len(y) > len(prefix) and y[: len(prefix)] == prefix:
            out[block.index[y]] = math.exp(law.suffix(law.logq, y, len(prefix)))
    return out


@dataclass(frozen=True)
class ChainOutcome:
    """The exact law of a chain's final completion and its expected generated tokens."""

    law: dict[Tokens, float]
    tokens: float


def _steps(block: Block, mass: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """``k`` proposals from ``mass``: the law after them and their expected tokens."""
    tokens = 0.0
    if k > 200:  # the limit: costs are not asked for there
        return mass @ np.linalg.matrix_power(block.kernel, k), math.nan
    for _ in range(k):
        tokens += float(mass @ block.proposal_tokens)
        mass = mass @ block.kernel
    return mass, tokens


def run_chain(law: TinyLaw, blocks: int, after_eos: str, k: int, policy: Policy | None = None,
              checkpoints: tuple[int, ...] = ()) -> ChainOutcome:
    """The exact law and cost of a chain of ``blocks`` blocks starting at ``k`` proposals each.

    Follows `power_chain`: in each block, extend an unended state to the horizon, run k
    proposals, then at a checkpoint block let ``policy`` set k from the state, then apply the
    after-EOS rule to states that have ended before the last block. Costs are NaN for k > 200.
    """
    size = law.new_tokens // blocks
    made = [mh_block(law, b * size) for b in range(1, blocks + 1)]
    final = made[-1]
    finished = np.zeros(len(final.states))
    tokens = 0.0
    # the law of the state entering each block, split by the k in force: k -> (S_b,) masses
    entering: dict[int, np.ndarray] = {k: np.ones(1)}
    previous: Block | None = None
    for b, block in enumerate(made, start=1):
        after: dict[int, np.ndarray] = defaultdict(partial(np.zeros, len(block.states)))
        for kk, mass in entering.items():
            carried = np.zeros(len(block.states))
            for x, m in zip(previous.states if previous else [()], mass, strict=True):
                if m == 0:
                    continue
                if x and x[-1] == law.eos:
                    carried[block.index[x]] += m
                else:
                    ext = _extension(law, x, block)
                    carried += m * ext
                    tokens += m * float(ext @ np.array([len(y) - len(x) for y in block.states]))
            moved, cost = _steps(block, carried, kk)
            after[kk] += moved
            tokens += cost
        if b in checkpoints and policy is not None:
            decided: dict[int, np.ndarray] = defaultdict(partial(np.zeros, len(block.states)))
            for kk, mass in after.items():
                for n, x in enumerate(block.states):
                    decided[policy(b, x, kk)][n] += mass[n]
            after = decided
        entering = {}
        for kk, mass in after.items():
            ended = np.array([x[-1] == law.eos for x in block.states])
            if b == blocks or after_eos == "continue":
                entering[kk] = mass
                continue
            entering[kk] = np.where(ended, 0.0, mass)
            done = np.where(ended, mass, 0.0)
            if after_eos == "jump":
                moved = np.zeros(len(final.states))
                for n in np.flatnonzero(done):
                    moved[final.index[block.states[n]]] += done[n]
                done, cost = _steps(final, moved, kk)
                tokens += cost
                finished += done
            else:  # stop
                for n in np.flatnonzero(done):
                    finished[final.index[block.states[n]]] += done[n]
        previous = block
    for mass in entering.values():
        finished += mass
    return ChainOutcome(dict(zip(final.states, finished, strict=True)), tokens)


def chain_law(law: TinyLaw, blocks: int, after_eos: str, k: int) -> dict[Tokens, float]:
    """The exact law of the final completion after ``blocks`` blocks of ``k`` proposals each."""
    return run_chain(law, blocks, after_eos, k).law
