"""The exact law of the power sampler's Markov chain on a tiny vocabulary, by transition matrices.

DESIGN §1's algorithm, written as matrices instead of samples: for each block the MH kernel over
every state of that block's horizon (completions that ended at EOS, or unended prefixes of the
horizon's length), the extension kernel between blocks, and the `--after-eos stop` rule. With it a
test can check (a) that the chain's limit is exactly p^alpha, with no sampling noise, and (b) that
the engine's empirical law after k proposals per block is this chain's law after k, for any k.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

Tokens = tuple[int, ...]


@dataclass(frozen=True)
class TinyLaw:
    """Next-token log-probs of p and q = softmax(alpha * logits) after every prefix."""

    logp: dict[Tokens, np.ndarray]
    logq: dict[Tokens, np.ndarray]
    vocab: int
    eos: int
    new_tokens: int
    alpha: float

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


def _extension(law: TinyLaw, prefix: Tokens, states: list[Tokens], index: dict[Tokens, int]) -> np.ndarray:
    """Law of ``prefix`` extended by the proposal up to the horizon of ``states``."""
    out = np.zeros(len(states))
    for y in states:
        if len(y) > len(prefix) and y[: len(prefix)] == prefix:
            out[index[y]] = math.exp(law.suffix(law.logq, y, len(prefix)))
    return out


def mh_kernel(law: TinyLaw, horizon: int) -> tuple[list[Tokens], np.ndarray]:
    """One MH proposal at this horizon: i uniform over the state's positions, regenerate, accept."""
    states = law.states(horizon)
    index = {x: n for n, x in enumerate(states)}
    kernel = np.zeros((len(states), len(states)))
    for x in states:
        t = len(x)
        for i in range(t):
            for y in states:
                if len(y) <= i or y[:i] != x[:i]:
                    continue
                q = math.exp(law.suffix(law.logq, y, i))
                log_r = (law.alpha * (law.suffix(law.logp, y, i) - law.suffix(law.logp, x, i))
                         + law.suffix(law.logq, x, i) - law.suffix(law.logq, y, i) + math.log(t / len(y)))
                accept = math.exp(min(log_r, 0.0))
                kernel[index[x], index[y]] += q * accept / t
                kernel[index[x], index[x]] += q * (1 - accept) / t
    return states, kernel


def chain_law(law: TinyLaw, blocks: int, after_eos: str, k: int) -> dict[Tokens, float]:
    """The exact law of the final completion after ``blocks`` blocks of ``k`` proposals each."""
    size = law.new_tokens // blocks
    kernels = [mh_kernel(law, b * size) for b in range(1, blocks + 1)]
    final_states = kernels[-1][0]
    stopped = dict.fromkeys(final_states, 0.0)
    states, kernel = kernels[0]
    current = _extension(law, (), states, {x: n for n, x in enumerate(states)})
    current = current @ np.linalg.matrix_power(kernel, k)
    for next_states, next_kernel in kernels[1:]:
        index = {x: n for n, x in enumerate(next_states)}
        carried = np.zeros(len(next_states))
        for x, mass in zip(states, current, strict=True):
            if x[-1] == law.eos and after_eos == "stop":
                stopped[x] += mass
            elif x[-1] == law.eos:
                carried[index[x]] += mass
            else:
                carried += mass * _extension(law, x, next_states, index)
        states, current = next_states, carried @ np.linalg.matrix_power(next_kernel, k)
    return {x: stopped[x] + mass for x, mass in zip(states, current, strict=True)}
