"""The batched decode loop every sampling method runs on (DESIGN §2, §5).

Many chains share one batch. Each chain is a driver generator with at most one outstanding
request; a finished request's row is handed to the next queued request at once (continuous
batching) and a request starting inside a known sequence reuses that sequence's key/value cache
instead of re-encoding the prefix. Controller queries from chains that reach a checkpoint in the
same step are answered in one batched call.

Out of device memory (`torch.cuda.OutOfMemoryError`, which only CUDA raises) while the batch is
formed or decoded, the run halves its batch and puts every request in flight back at the head of
the queue, to be decoded again from its start with its chain's generator rewound: no chain is lost
or duplicated, and a chain's tokens are those it would have had without the failure. A batch of
one that does not fit stops the run with a `UserError`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dps_cli.errors import UserError
from dps_cli.sampling.backend import BackendStats, Decider, Driver, OnDone
from dps_cli.sampling.driver_loop import Chain, DriverLoop, drive
from dps_cli.sampling.kvcache import BatchKV
from dps_cli.sampling.requests import Completion, Prefill, PrefillResult, Request, Sequence
from dps_cli.sampling.tokens import NonFiniteLogits, sample_step

logger = logging.getLogger(__name__)

EngineStats = BackendStats  # the name callers used before the backend seam


@dataclass
class _Row:
    chain: Chain
    request: Request
    next_input: int
    position: int
    rng_state: Mapping[str, Any]  # the chain's generator when the row was placed: a retry rewinds it
    tokens: list[int] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    logq: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    max_prob: list[float] = field(default_factory=list)
    hidden_sum: np.ndarray | None = None


class Engine:
    """The ``hf`` backend: runs driver generators to completion on one model and device.

    A `Sequence` it makes holds its keys/values for ``tokens[:n]`` (n >= len - 1) in ``cache``
    as one (L, 2, H, n, D) tensor, so any request can start from any position.
    """

    name = "hf"

    def __init__(self, model: Any, eos_token_ids: Seq[int], max_batch: int = 16,
                 hidden_layer: int | None = None, decider: Decider | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.eos = frozenset(int(t) for t in eos_token_ids)
        self.max_batch = max_batch
        self.hidden_layer = hidden_layer
        self.decider = decider
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.num_layers = int(config.num_hidden_layers)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.model_name = str(getattr(model, "name_or_path", "") or getattr(config, "_name_or_path", "")
                              or type(model).__name__)
        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.stats = EngineStats()

    # ------------------------------------------------------------------ public
    def run(self, drivers: Iterable[tuple[Any, Driver]], on_done: Callable[[Any, Any], None],
            on_step: Callable[[EngineStats], None] | None = None) -> EngineStats:
        """Drive every (key, generator) to its return value, reported through ``on_done``."""
        self.stats = EngineStats()
        run = _Run(self, iter(drivers), on_done)
        with _HiddenCapture(self.model, self.hidden_layer) as capture, torch.inference_mode():
            run.capture = capture
            return drive(run, self.stats, on_step)

    def close(self) -> None:
        """Nothing to release: the model belongs to the caller."""

    def forward(self, kv: BatchKV, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """One forward pass writing into ``kv``; returns the last position's logits (B, V)."""
        mask = kv.attention_mask(input_ids.shape[1])
        kwargs = {self._cache_kwarg: kv.as_cache()}
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1, **kwargs)
        kv.advance(input_ids.shape[1])
        logits: torch.Tensor = out.logits[:, -1, :]  # (B, V)
        return logits

    def new_kv(self) -> BatchKV:
        return BatchKV(self.num_layers, self.kv_heads, self.head_dim, self.dtype, self.device)


class _Run(DriverLoop):
    """The state of one `Engine.run` call: the request queue, the rows and the batch cache."""

    def __init__(self, engine: Engine, chains: Iterator[tuple[Any, Driver]], on_done: OnDone) -> None:
        super().__init__(chains, on_done, engine.max_batch, engine.decider)
        self.engine = engine
        self.queue: deque[tuple[Chain, Request]] = deque()
        self.rows: list[_Row | None] = []
        self.kv = engine.new_kv()
        self.capture: _HiddenCapture | None = None

    # ------------------------------------------------------------ scheduling
    def _in_work(self) -> int:
        return sum(row is not None for row in self.rows) + len(self.queue)

    def _decoding(self) -> bool:
        return any(row is not None for row in self.rows)

    def _submit(self, chain: Chain, request: Request) -> None:
        if _cached_tokens(request.base) < request.start - 1:
            raise ValueError("request base has no cache for its prefix")
        self.queue.append((chain, request))

    def _place_requests(self) -> None:
        try:
            self._fill_rows()
        except torch.cuda.OutOfMemoryError as error:
            self._retry_smaller(error, min(self.max_batch, self._in_work()))

    def _fill_rows(self) -> None:
        """Queued requests into free rows, then new rows up to ``max_batch``; idle rows dropped.

        A request leaves the queue only once its row holds its cache, so an out-of-memory error
        anywhere here leaves every request either queued or in a row.
        """
        free = [i for i, row in enumerate(self.rows) if row is None]
        while self.queue and free:
            chain, request = self.queue[0]
            self.kv.replace_row(free[0], _prefix_kv(request))
            self.queue.popleft()
            self.rows[free.pop(0)] = _new_row(chain, request)
        room = self.max_batch - len(self.rows)
        if self.queue and room > 0:
            added = list(itertools.islice(self.queue, room))
            self.kv.add_rows([_prefix_kv(request) for _, request in added])
            for _ in added:
                self.queue.popleft()
            self.rows.extend(_new_row(chain, request) for chain, request in added)
        # idle rows would cost a full row of compute every step: drop them, highest index first
        # so that the last row moved into a freed slot is never itself a freed one
        for index in sorted(free, reverse=True):
            self.kv.remove_row(index)
            self.rows[index] = self.rows[-1]
            self.rows.pop()

    def _retry_smaller(self, error: torch.cuda.OutOfMemoryError, batch: int) -> None:
        """Halve the batch of ``batch`` rows that ran out of memory and re-queue every row in flight.

        Each request goes back whole, with its chain's generator rewound to where it stood when
        the request was placed, so its second decoding draws the same uniforms as its first.
        """
        if batch <= 1:
            row = next((r for r in self.rows if r is not None), None)
            asked = "" if row is None else (f" (up to {row.request.max_new} new tokens after a prefix "
                                            f"of {row.request.start} tokens)")
            raise UserError(f"Out of GPU memory decoding a single chain{asked} of {self.engine.model_name} "
                            f"in {str(self.engine.dtype).removeprefix('torch.')}: lower --max-new-tokens "
                            "or use a device with more memory.") from error
        in_flight = [row for row in self.rows if row is not None]
        for row in reversed(in_flight):
            row.request.rng.bit_generator.state = row.rng_state
            self.queue.appendleft((row.chain, row.request))
        self.engine.stats.tokens -= sum(len(row.tokens) for row in in_flight)
        self.rows = []
        self.kv = self.engine.new_kv()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.max_batch = batch // 2
        logger.warning("Out of GPU memory with %d chains in the batch: retrying %d of them from their "
                       "start, at most %d at a time.", batch, len(in_flight), self.max_batch)

    # ----------------------------------------------------------------- compute
    def _encode(self, item: Prefill) -> PrefillResult:
        """Encode one prompt; out of memory, make room by shrinking the decode batch first."""
        while True:
            try:
                return self._encode_prompt(item)
            except torch.cuda.OutOfMemoryError as error:
                decoding = sum(row is not None for row in self.rows)
                if decoding == 0:
                    raise UserError(f"Out of GPU memory encoding a prompt of {len(item.prompt_ids)} tokens "
                                    f"with {self.engine.model_name} in "
                                    f"{str(self.engine.dtype).removeprefix('torch.')}: use a shorter "
                                    "prompt or a device with more memory.") from error
                self._retry_smaller(error, max(decoding, 2))

    def _encode_prompt(self, item: Prefill) -> PrefillResult:
        engine = self.engine
        kv = engine.new_kv()
        kv.add_rows([None])
        kv.reserve(len(item.prompt_ids))
        ids = torch.tensor([item.prompt_ids], device=engine.device)
        positions = torch.arange(len(item.prompt_ids), device=engine.device)[None, :]
        logits = engine.forward(kv, ids, positions)
        scores = None
        if item.score_tokens:
            logp = torch.log_softmax(logits[0].float(), dim=-1)
            scores = logp[list(item.score_tokens)].cpu().numpy()
        hidden = None
        if item.want_hidden and self.capture is not None and self.capture.last is not None:
            hidden = self.capture.last[0].float().mean(0).cpu().numpy()
        empty = np.zeros(0, dtype=np.float32)
        sequence = Sequence(np.asarray(item.prompt_ids, dtype=np.int64), len(item.prompt_ids),
                            empty, empty, empty, empty, cache=kv.extract_row(0))
        return PrefillResult(sequence, hidden, scores)

    def step(self) -> None:
        """One decode step for every row; finished rows hand their completion to their chain.

        Completions are all made before any row is freed or any chain resumes, so that an
        out-of-memory error leaves each request in exactly one place: a row or the queue.
        """
        try:
            finished = self._decode_step()
            completions = [(row.chain, self._complete(i, row, hit_eos)) for i, row, hit_eos in finished]
        except torch.cuda.OutOfMemoryError as error:
            self._retry_smaller(error, sum(row is not None for row in self.rows))
            return
        for i, _, _ in finished:
            self.rows[i] = None
        for chain, completion in completions:
            self._advance(chain, completion)

    def _decode_step(self) -> list[tuple[int, _Row, bool]]:
        """Sample one token for every row; returns the rows that finished (index, row, hit EOS)."""
        engine = self.engine
        rows: list[_Row] = [row for row in self.rows if row is not None]
        self.kv.reserve(1)
        ids = torch.tensor([[row.next_input] for row in rows], device=engine.device)
        positions = torch.tensor([[row.position] for row in rows], device=engine.device)
        logits = engine.forward(self.kv, ids, positions)
        temperatures = torch.tensor([row.request.temperature for row in rows], dtype=torch.float32,
                                    device=engine.device)
        uniforms = torch.tensor([row.request.rng.random() if row.request.temperature > 0 else 0.0
                                 for row in rows], dtype=torch.float64,  # float64: tokens.py says why
                                device=engine.device if engine.device.type != "mps" else "cpu")  # MPS: no float64
        try:
            out = sample_step(logits, temperatures, uniforms)
        except NonFiniteLogits as err:
            dtype = str(engine.dtype).removeprefix("torch.")
            raise NonFiniteLogits(f"Model {engine.model_name} in {dtype} returned NaN or infinite logits for "
                                  f"{err.rows} of {err.of} sequences, so its tokens cannot be sampled "
                                  "(float16 overflows; try --dtype float32).", err.rows, err.of) from None
        hidden = None
        if self.capture is not None and self.capture.last is not None:
            hidden = self.capture.last[:, -1, :].float().cpu().numpy()  # (B, H)
        engine.stats.steps += 1
        engine.stats.tokens += len(rows)
        finished: list[tuple[int, _Row, bool]] = []
        for i, row in enumerate(rows):
            token = out.tokens[i]
            row.tokens.append(token)
            row.logp.append(out.logp_base[i])
            row.logq.append(out.logq_proposal[i])
            row.entropy.append(out.entropy[i])
            row.max_prob.append(out.max_prob[i])
            if hidden is not None and row.request.want_hidden:
                row.hidden_sum = hidden[i].copy() if row.hidden_sum is None else row.hidden_sum + hidden[i]
            row.next_input, row.position = token, row.position + 1
            hit_eos = token in engine.eos
            if hit_eos or len(row.tokens) >= row.request.max_new:
                finished.append((i, row, hit_eos))
        return finished

    def _complete(self, index: int, row: _Row, hit_eos: bool) -> Completion:
        request, base = row.request, row.request.base
        keep = request.start - base.prompt_len

        def joined(old: np.ndarray, new: list[float]) -> np.ndarray:
            return np.concatenate([old[:keep], np.asarray(new, dtype=np.float32)])

        sequence = Sequence(
            tokens=np.concatenate([base.tokens[: request.start], np.asarray(row.tokens, dtype=np.int64)]),
            prompt_len=base.prompt_len,
            logp_base=joined(base.logp_base, row.logp),
            logq_proposal=joined(base.logq_proposal, row.logq),
            entropy=joined(base.entropy, row.entropy),
            max_prob=joined(base.max_prob, row.max_prob),
            cache=self.kv.extract_row(index),
        )
        hidden_mean = None if row.hidden_sum is None else (row.hidden_sum / len(row.tokens)).astype(np.float32)
        return Completion(sequence, len(row.tokens), hit_eos, hidden_mean)


def _cached_tokens(sequence: Sequence) -> int:
    cache = sequence.cache
    return int(cache.shape[3]) if isinstance(cache, torch.Tensor) else 0


def _prefix_kv(request: Request) -> torch.Tensor | None:
    """The cache of every token before the one the request feeds first (a view, no copy)."""
    cache = request.base.cache
    if request.start <= 1 or not isinstance(cache, torch.Tensor):
        return None
    return cache[:, :, :, : request.start - 1]


def _new_row(chain: Chain, request: Request) -> _Row:
    return _Row(chain, request, next_input=int(request.base.tokens[request.start - 1]),
                position=request.start - 1, rng_state=request.rng.bit_generator.state)


class _HiddenCapture:
    """Forward hook keeping the latest output of the layer whose output is hidden state L."""

    def __init__(self, model: Any, layer: int | None) -> None:
        self.model, self.layer = model, layer
        self.last: torch.Tensor | None = None
        self._handle: Any = None

    def __enter__(self) -> _HiddenCapture:
        if self.layer is None:
            return self
        module = hidden_state_module(self.model, self.layer)
        self._handle = module.register_forward_hook(self._hook)
        return self

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        self.last = output[0] if isinstance(output, tuple) else output

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()


def hidden_state_module(model: Any, layer: int) -> torch.nn.Module:
    """The module whose output is hidden state ``layer`` (0 = embeddings, L = decoder layer L)."""
    decoder_layers = model.get_decoder().layers
    if not 0 <= layer <= len(decoder_layers):
        raise ValueError(f"hidden layer {layer} outside 0..{len(decoder_layers)}")
    module: torch.nn.Module = model.get_input_embeddings() if layer == 0 else decoder_layers[layer - 1]
    return module
