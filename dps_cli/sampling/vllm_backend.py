"""The ``vllm`` backend: the same drivers on vLLM's engine (prefix caching, continuous batching).

How it serves the driver messages:
- `Request`: one vLLM request whose prompt is ``base.tokens[:start]`` as token ids (never text;
  the engine runs with ``skip_tokenizer_init``). Prefix caching is on, so a proposal from position
  i pays nothing for the prefix it shares with earlier requests. The request goes into the engine
  as soon as its driver yields it and the engine steps all live requests together (continuous
  batching through ``LLMEngine.add_request`` / ``step``). Its seed is drawn from the chain's own
  random stream, so a run is reproducible whatever shares its batches.
- `Prefill`: nothing to compute on vLLM's side (the prompt is encoded by the first request and
  then cached); hidden states and scored next tokens come from the Hugging Face model (below).
- `Decide`: answered in batches between engine steps, as in the ``hf`` backend.

Log-probabilities. vLLM returns one kind of log-probability per engine (``logprobs_mode``); we ask
for ``raw_logprobs``: the untempered log-softmax in float32, so ``logp_base`` of the sampled token
is exact, as is ``max_prob`` (the rank-1 entry). The proposal is q = p^a / Z with a = 1/T
(= alpha for power sampling), so ``logq_proposal = a * log p - log Z`` with Z = sum_v p(v)^a. We
compute Z from the top-K returned probabilities (plus the sampled token) rather than exactly
through a logits processor: vLLM's logits processors run inside the engine-core process and can
change logits but cannot return a per-token number, so exact Z would need a private side channel
that breaks with multiprocessing and CUDA graphs. With K entries known, the neglected tail of Z is
at most p_(K)^(a-1) * (1 - sum_known p), so the computed log q lies at most
``log1p(tail / Z_K)`` above the true one. That bound is kept per token in
``Sequence.logq_bound`` (zero when K covers the vocabulary, as in the exact-enumeration tests);
a chain's bound on its final state is ``Sequence.max_suffix_logq_bound()``. At alpha = 4 and
K = 20 the bound is negligible wherever the model is not near-uniform: the tail enters to the
fourth power. The entropy of p uses the same entries, the tail counted at its lower bound
``tail * -log p_(K)`` (exact when the tail is empty).

Length. vLLM also ends a request at the engine's ``max_model_len``, with the same "length" finish
reason as at ``max_tokens``; such a completion has neither EOS nor its requested length, and in an
MH ratio it would be a cut-short completion. So a request whose prompt plus new tokens exceeds
``max_model_len`` is refused when submitted (a `UserError` naming ``--max-new-tokens`` and the
limit), and every finished request is checked to end with EOS or have exactly its ``max_new``
tokens (`check_finish`). A NaN log-probability of a sampled token stops the run
(`NonFiniteLogits`), as on the ``hf`` backend.

Hidden features. vLLM does not expose intermediate layers, so hidden states come from one
Hugging Face forward pass of the same model over the finished sequence, read at the same layer
and the same positions the ``hf`` backend reads during decoding (the positions whose outputs
sampled the new tokens; the prompt positions for the question embedding). Both backends therefore
compute the same feature; a controller trained on runs of one works on the other.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dps_cli.errors import DpsError, UserError
from dps_cli.sampling.backend import BackendStats, Decider, Driver, OnDone
from dps_cli.sampling.driver_loop import Chain, DriverLoop, drive
from dps_cli.sampling.requests import Completion, Prefill, PrefillResult, Request, Sequence
from dps_cli.sampling.tokens import NonFiniteLogits

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 20  # log-probabilities returned per token (vLLM's default max_logprobs)
EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class TokenStats:
    """The per-token statistics of one completion, each (n,) float32."""

    logp_base: np.ndarray
    logq_proposal: np.ndarray
    entropy: np.ndarray
    max_prob: np.ndarray
    logq_bound: np.ndarray


def token_stats(tokens: list[int], logprobs: list[dict[int, float]], temperature: float,
                vocab_size: int, top_k: int) -> TokenStats:
    """Per-token statistics from vLLM's raw log-probabilities (module docstring for the maths).

    Args:
        tokens: the sampled tokens.
        logprobs: per position, token id -> raw log p for the top-K and the sampled token.
        temperature: the proposal temperature T (0: greedy, log q recorded as 0).
        vocab_size: the model's vocabulary size.
        top_k: K, the number of top entries requested per position.
    """
    n = len(tokens)
    out = {name: np.zeros(n, dtype=np.float64) for name in ("logp", "logq", "ent", "maxp", "bound")}
    a = 1.0 / temperature if temperature > 0 else 0.0
    for j, (token, entries) in enumerate(zip(tokens, logprobs, strict=True)):
        logps = np.fromiter(entries.values(), dtype=np.float64, count=len(entries))
        logps = np.maximum(logps, -1e30)  # -inf entries contribute nothing
        probs = np.exp(logps)
        tail = max(0.0, 1.0 - float(probs.sum())) if len(entries) < vocab_size else 0.0
        p_floor = float(np.sort(probs)[::-1][: max(top_k, 1)][-1])  # p_(K): no tail token exceeds it
        logp = float(entries[token])
        out["logp"][j] = logp
        out["maxp"][j] = float(probs.max())
        known_entropy = float(-(probs * logps).sum())
        out["ent"][j] = known_entropy + (tail * -math.log(p_floor) if tail > 0 and p_floor > 0 else 0.0)
        if a == 0.0:
            continue
        log_z_known = float(np.logaddexp.reduce(a * logps))
        out["logq"][j] = a * logp - log_z_known
        if tail > 0:
            unknown = max(vocab_size - len(entries), 1)
            tail_z = p_floor ** (a - 1) * tail if a >= 1 else unknown ** (1 - a) * tail ** a
            out["bound"][j] = math.log1p(tail_z / math.exp(log_z_known))
    return TokenStats(*(out[k].astype(np.float32) for k in ("logp", "logq", "ent", "maxp", "bound")))


class UnfinishedCompletion(DpsError):
    """vLLM ended a request with neither EOS nor its requested number of tokens."""


def check_finish(tokens: list[int], finish_reason: str | None, max_new: int, eos: Iterable[int]) -> None:
    """Fail unless a finished request ended with an EOS token or has exactly ``max_new`` tokens.

    vLLM reports "length" both at ``max_tokens`` and at the engine's ``max_model_len``, and
    "abort" for a request it dropped; only the token count tells a complete request apart.
    """
    ended = bool(tokens) and tokens[-1] in set(eos)
    if finish_reason not in ("stop", "length") or not (ended or len(tokens) == max_new):
        raise UnfinishedCompletion(
            f"vLLM finished a request after {len(tokens)} of {max_new} tokens without EOS (finish reason "
            f"{finish_reason!r}); a completion cut short cannot enter a Metropolis-Hastings ratio.")


def check_length(start: int, max_new: int, max_model_len: int) -> None:
    """Refuse a request that vLLM would cut at ``max_model_len`` before EOS or ``max_new`` tokens."""
    if start + max_new > max_model_len:
        raise UserError(
            f"A prompt of {start} tokens plus {max_new} new tokens exceeds the vLLM engine's max_model_len "
            f"of {max_model_len}, so completions would be cut short;",
            f"lower --max-new-tokens so that the prompt plus --max-new-tokens is at most {max_model_len}.")


class VllmBackend:
    """Runs driver generators on a vLLM ``LLMEngine`` (V1), one engine request per `Request`."""

    name = "vllm"

    def __init__(self, model_path: str, eos_token_ids: Iterable[int], *, max_batch: int = 64,
                 hidden_layer: int | None = None, decider: Decider | None = None, scorer: Any = None,
                 options: dict[str, Any] | None = None) -> None:
        """Start the engine (tens of seconds; reuse one backend for many runs).

        Args:
            model_path: a directory or hub id vLLM can load.
            eos_token_ids: tokens that end a completion (passed as stop tokens).
            max_batch: chains in flight at once (vLLM's ``max_num_seqs``).
            hidden_layer: layer of the hidden-state features; needs ``scorer``.
            decider: batched controller call for DPS.
            scorer: the same model in Hugging Face form, for hidden states and prompt scoring.
            options: ``top_k`` (log-probabilities per token) and any ``vllm.EngineArgs`` field.
        """
        from vllm import EngineArgs  # type: ignore[import-not-found, unused-ignore]
        from vllm.v1.engine.llm_engine import LLMEngine  # type: ignore[import-not-found, unused-ignore]

        opts = dict(options or {})
        self.top_k = int(opts.pop("top_k", DEFAULT_TOP_K))
        self.max_logprobs = int(opts.get("max_logprobs", self.top_k))  # the engine's cap
        self._check_top_k(self.top_k)
        self.eos = [int(t) for t in eos_token_ids]
        self.max_batch = max_batch
        self.hidden_layer = hidden_layer
        self.decider = decider
        self.scorer = scorer
        if hidden_layer is not None and scorer is None:
            raise ValueError("hidden-state features on the vllm backend need the Hugging Face model")
        defaults: dict[str, Any] = {
            "model": model_path, "skip_tokenizer_init": True, "enable_prefix_caching": True,
            "logprobs_mode": "raw_logprobs", "max_logprobs": self.max_logprobs, "max_num_seqs": max_batch,
            "seed": 0,
        }
        if scorer is not None and "dtype" not in opts:
            # the hf backend's dtype (float32 on the CPU); vLLM's own default downcasts to bfloat16
            defaults["dtype"] = str(next(scorer.parameters()).dtype).removeprefix("torch.")
        if torch.cuda.is_available() and "gpu_memory_utilization" not in opts:
            free, total = torch.cuda.mem_get_info()  # leave room for the scorer already on the GPU
            defaults["gpu_memory_utilization"] = round(0.9 * free / total, 3)
        if not torch.cuda.is_available():
            # vLLM discards the token sampled after a partial (chunked) prefill and rewinds the
            # request's seeded generator, which a CPU generator cannot do ("CPU Generator does
            # not use offset"): every seeded request must be prefilled whole, as vLLM itself
            # arranges for MLA models on the CPU. The step's token budget then grows to at least
            # max_model_len.
            defaults["enable_chunked_prefill"] = False
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vLLM's CPU default is larger
        self.engine: Any = LLMEngine.from_engine_args(EngineArgs(**{**defaults, **opts}))
        self.vocab_size = int(self.engine.model_config.get_vocab_size())
        self.max_model_len = int(self.engine.model_config.max_model_len)
        self.model_name = model_path
        self.dtype = str(self.engine.model_config.dtype).removeprefix("torch.")
        self.stats = BackendStats()

    def rebind(self, *, eos_token_ids: Iterable[int] | None = None, max_batch: int | None = None,
               hidden_layer: int | None = None, decider: Decider | None = None,
               top_k: int | None = None) -> VllmBackend:
        """A backend sharing this one's engine with other run settings (no restart).

        Stop tokens, chains in flight, hidden layer, controller and the log-probabilities per
        token (up to the engine's ``max_logprobs``) are per-run settings here; only the model and
        the engine options are fixed at start.
        """
        other = copy.copy(self)
        if top_k is not None:
            self._check_top_k(top_k)
            other.top_k = top_k
        if eos_token_ids is not None:
            other.eos = [int(t) for t in eos_token_ids]
        if max_batch is not None:
            other.max_batch = max_batch
        if hidden_layer is not None and self.scorer is None:
            raise ValueError("hidden-state features on the vllm backend need the Hugging Face model")
        other.hidden_layer, other.decider = hidden_layer, decider
        return other

    def _check_top_k(self, top_k: int) -> None:
        """vLLM refuses requests for more log-probabilities than the engine's ``max_logprobs``."""
        if not 1 <= top_k <= self.max_logprobs:
            raise ValueError(f"top_k {top_k} outside 1..{self.max_logprobs} (the engine's max_logprobs)")

    def close(self) -> None:
        """Shut the engine's worker processes down."""
        engine, self.engine = self.engine, None
        if engine is not None:
            core = getattr(engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()

    def run(self, drivers: Iterable[tuple[Any, Driver]], on_done: OnDone,
            on_step: Callable[[BackendStats], None] | None = None) -> BackendStats:
        """Drive every (key, generator) to its return value, reported through ``on_done``."""
        if self.engine is None:
            raise RuntimeError("the vllm backend was closed")
        self.stats = BackendStats()
        with torch.inference_mode():
            return drive(_Run(self, iter(drivers), on_done), self.stats, on_step)

    # ---------------------------------------------------------- HF features
    def layer_states(self, tokens: np.ndarray) -> np.ndarray:
        """Hidden state ``hidden_layer`` at every position of ``tokens``: (T, H) float32."""
        from dps_cli.sampling.engine import hidden_state_module

        assert self.scorer is not None and self.hidden_layer is not None
        captured: list[torch.Tensor] = []

        def hook(module: Any, args: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)

        handle = hidden_state_module(self.scorer, self.hidden_layer).register_forward_hook(hook)
        try:
            device = next(self.scorer.parameters()).device
            self.scorer(input_ids=torch.as_tensor(tokens[None, :], device=device), logits_to_keep=1)
        finally:
            handle.remove()
        states: np.ndarray = captured[-1][0].float().cpu().numpy()  # (T, H)
        return states

    def score_next(self, prompt_ids: tuple[int, ...], tokens: tuple[int, ...]) -> np.ndarray:
        """log p of each of ``tokens`` as the next token after the prompt (float32)."""
        if self.scorer is None:
            raise ValueError("scoring prompts on the vllm backend needs the Hugging Face model")
        device = next(self.scorer.parameters()).device
        logits = self.scorer(input_ids=torch.tensor([prompt_ids], device=device), logits_to_keep=1).logits
        scores: np.ndarray = torch.log_softmax(logits[0, -1].float(), -1)[list(tokens)].cpu().numpy()
        return scores


class _Run(DriverLoop):
    """The state of one `VllmBackend.run` call: the requests in vLLM's engine, by request id."""

    def __init__(self, backend: VllmBackend, chains: Iterator[tuple[Any, Driver]], on_done: OnDone) -> None:
        super().__init__(chains, on_done, backend.max_batch, backend.decider)
        self.backend = backend
        self.in_flight: dict[str, tuple[Chain, Request]] = {}
        self.next_id = 0

    def _in_work(self) -> int:
        return len(self.in_flight)

    def _encode(self, item: Prefill) -> PrefillResult:
        backend = self.backend
        ids = np.asarray(item.prompt_ids, dtype=np.int64)
        hidden = None
        if item.want_hidden and backend.hidden_layer is not None:
            hidden = backend.layer_states(ids).mean(0)
        scores = backend.score_next(item.prompt_ids, item.score_tokens) if item.score_tokens else None
        return PrefillResult(Sequence(ids, len(ids), EMPTY, EMPTY, EMPTY, EMPTY), hidden, scores)

    def _submit(self, chain: Chain, request: Request) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind  # type: ignore[import-not-found, unused-ignore]

        base = request.base
        check_length(request.start, request.max_new, self.backend.max_model_len)
        greedy = request.temperature <= 0
        seed = None if greedy else int(request.rng.integers(0, 2**31 - 1))
        params = SamplingParams(
            temperature=0.0 if greedy else request.temperature, top_p=1.0, top_k=0, min_p=0.0,
            max_tokens=request.max_new, seed=seed, logprobs=min(self.backend.top_k, self.backend.vocab_size),
            stop_token_ids=self.backend.eos, ignore_eos=True, detokenize=False,
            skip_special_tokens=False, output_kind=RequestOutputKind.FINAL_ONLY,
        )
        request_id = str(self.next_id)
        self.next_id += 1
        prompt = {"prompt_token_ids": [int(t) for t in base.tokens[: request.start]]}
        self.backend.engine.add_request(request_id, prompt, params)
        self.in_flight[request_id] = (chain, request)

    def step(self) -> None:
        """One engine step; every finished request's completion goes back to its chain at once."""
        stats = self.backend.stats
        stats.steps += 1
        for output in self.backend.engine.step():
            if not output.finished:
                continue
            chain, request = self.in_flight.pop(output.request_id)
            completion = self._complete(request, output.outputs[0])
            stats.tokens += completion.new_tokens
            self._advance(chain, completion)

    def _complete(self, request: Request, output: Any) -> Completion:
        backend, base = self.backend, request.base
        tokens = [int(t) for t in output.token_ids]
        check_finish(tokens, output.finish_reason, request.max_new, backend.eos)
        entries = [{int(t): float(lp.logprob) for t, lp in position.items()} for position in output.logprobs]
        stats = token_stats(tokens, entries, request.temperature, backend.vocab_size, backend.top_k)
        if np.isnan(stats.logp_base).any() or np.isnan(stats.logq_proposal).any():
            raise NonFiniteLogits(f"Model {backend.model_name} in {backend.dtype} returned NaN log-probabilities "
                                  "on vLLM, so its tokens cannot be sampled (float16 overflows; try --dtype float32).")
        keep = request.start - base.prompt_len
        base_bound = base.logq_bound if base.logq_bound is not None else np.zeros(len(base) - base.prompt_len,
                                                                                  dtype=np.float32)

        def joined(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            return np.concatenate([old[:keep], new])

        sequence = Sequence(
            tokens=np.concatenate([base.tokens[: request.start], np.asarray(tokens, dtype=np.int64)]),
            prompt_len=base.prompt_len,
            logp_base=joined(base.logp_base, stats.logp_base),
            logq_proposal=joined(base.logq_proposal, stats.logq_proposal),
            entropy=joined(base.entropy, stats.entropy),
            max_prob=joined(base.max_prob, stats.max_prob),
            logq_bound=joined(base_bound, stats.logq_bound),
        )
        hidden_mean = None
        if request.want_hidden and backend.hidden_layer is not None and tokens:
            # the states at the positions that sampled the new tokens: start-1 .. start+n-2
            states = backend.layer_states(sequence.tokens[: request.start + len(tokens) - 1])
            hidden_mean = states[request.start - 1:].mean(0).astype(np.float32)
        hit_eos = bool(tokens) and tokens[-1] in backend.eos
        return Completion(sequence, len(tokens), hit_eos, hidden_mean)
