"""What drivers and the engine say to each other.

A driver is a generator. It yields a `Prefill` (encode my prompt), a `Request` (sample up to n
tokens after a prefix), a `RequestGroup` (several requests at once, answered together) or a
`Decide` (ask the controller for p_enough), and receives a `PrefillResult`, a `Completion`, a
tuple of completions or a float in return. Sequences are values: a proposal never mutates the sequence it
started from, so rejecting it costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sequence:
    """Prompt plus generated tokens, with per-token statistics of the generated part.

    ``cache`` is an opaque handle owned by the backend that produced the sequence (the ``hf``
    backend keeps the sequence's keys/values there; ``vllm`` keeps nothing, its prefix cache is
    global). Drivers never read it. ``logq_bound`` bounds, per token, how far ``logq_proposal`` may
    lie above the true log q when a backend computes q's normalizer from the top-K
    probabilities only (None: exact).
    """

    tokens: np.ndarray  # (T,) int64
    prompt_len: int
    logp_base: np.ndarray  # (T - prompt_len,) float32
    logq_proposal: np.ndarray  # (T - prompt_len,) float32
    entropy: np.ndarray  # (T - prompt_len,) float32, entropy of p at each position
    max_prob: np.ndarray  # (T - prompt_len,) float32, max_v p(v | prefix)
    cache: Any = None
    logq_bound: np.ndarray | None = None  # (T - prompt_len,) float32, >= 0

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def generated(self) -> np.ndarray:
        return self.tokens[self.prompt_len:]

    def max_suffix_logq_bound(self) -> float:
        """The largest summed log q bound over any suffix (all terms are >= 0: the whole one)."""
        return 0.0 if self.logq_bound is None else float(np.sum(self.logq_bound, dtype=np.float64))


@dataclass(frozen=True)
class Prefill:
    """Encode a prompt; the reply is a `PrefillResult`.

    ``score_tokens`` asks for the base model's log-probabilities of those tokens as the next
    token after the prompt (a judge's verdict letters, for instance).
    """

    prompt_ids: tuple[int, ...]
    want_hidden: bool = False
    score_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class PrefillResult:
    sequence: Sequence
    prompt_hidden_mean: np.ndarray | None  # (H,) mean of layer-L states over the prompt tokens
    next_token_logp: np.ndarray | None = None  # (len(score_tokens),) float32


@dataclass(frozen=True)
class Request:
    """Keep ``base.tokens[:start]`` and sample up to ``max_new`` tokens after it.

    ``temperature`` 0 means greedy. Sampling stops early after an EOS token. ``rng`` is the
    chain's own stream: it alone decides the tokens, whatever else shares the batch.
    """

    base: Sequence
    start: int
    max_new: int
    temperature: float
    rng: np.random.Generator
    want_hidden: bool = False


@dataclass(frozen=True)
class Completion:
    sequence: Sequence  # base.tokens[:start] + the new tokens
    new_tokens: int
    hit_eos: bool
    hidden_mean: np.ndarray | None  # (H,) mean of layer-L states over the new tokens' steps


@dataclass(frozen=True)
class RequestGroup:
    """Several requests served together; the reply is the tuple of their `Completion`s, in order.

    Power-SMC asks for one round of its particles this way. Each member counts as one request
    toward the run's ``max_batch`` (a group larger than it is refused), and members that share a
    base sequence share its prefix as any two requests do.
    """

    requests: tuple[Request, ...]


@dataclass(frozen=True)
class Decide:
    """Ask the controller for p_enough at a checkpoint; the reply is a float."""

    features: Any  # dps_cli.controllers.features.CheckpointFeatures
