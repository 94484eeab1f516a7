"""Key/value caches: one per chain sequence, and one batch cache the decode loop writes into.

The batch cache is *right-aligned*: every row's newest token sits in the same column, so one
decode step appends one column for all rows and the attention mask hides each row's left padding.
A new request is spliced into a free row by copying its prefix's cache; a finished row's cache is
copied out so a later proposal can start from any of its positions without re-encoding it.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Extra columns allocated whenever the buffers grow, so growth is rare.
GROWTH = 256
# Shift the columns left only when this much (and a quarter of the width) is padding everywhere.
COMPACT_MIN = 64


class SlotLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A cache layer over a preallocated buffer: writes new columns in place, no concatenation."""

    def __init__(self, owner: BatchKV, index: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.owner = owner
        self.index = index
        self.device = owner.keys[index].device
        self.is_initialized = True
        self._expose(owner.width)

    def _expose(self, width: int) -> None:
        self.keys = self.owner.keys[self.index][:, :, :width]
        self.values = self.owner.values[self.index][:, :, :width]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Buffers exist before the forward pass; nothing to initialize."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.owner.width
        end = start + key_states.shape[-2]
        self.owner.keys[self.index][:, :, start:end] = key_states
        self.owner.values[self.index][:, :, start:end] = value_states
        self._expose(end)
        assert self.keys is not None and self.values is not None
        return self.keys, self.values


class BatchKV:
    """Per-layer (B, H, capacity, D) buffers; row b holds its ``lengths[b]`` tokens in the
    columns just left of ``width``."""

    def __init__(self, num_layers: int, heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        self.shape = (heads, head_dim)
        self.dtype, self.device = dtype, device
        empty = [torch.zeros(0, heads, GROWTH, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
        self.keys = empty
        self.values = [t.clone() for t in empty]
        self.width = 0
        self.lengths: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def as_cache(self) -> Cache:
        """A transformers Cache view whose layers write into these buffers."""
        return Cache(layers=[SlotLayer(self, i) for i in range(len(self.keys))])

    def advance(self, columns: int = 1) -> None:
        """Account for ``columns`` tokens written to every row by the last forward pass."""
        self.width += columns
        self.lengths = [n + columns for n in self.lengths]

    def attention_mask(self, new_columns: int = 1) -> torch.Tensor:
        """(B, width + new_columns) mask: 1 over each row's tokens and the incoming ones."""
        total = self.width + new_columns
        lengths = torch.tensor(self.lengths, device=self.device) + new_columns
        cols = torch.arange(total, device=self.device)
        return (cols[None, :] >= (total - lengths)[:, None]).long()

    def reserve(self, columns: int) -> None:
        """Make room for ``columns`` more columns on the right, compacting padding first."""
        if self.width + columns <= self.capacity:
            return
        self._compact()
        if self.width + columns > self.capacity:
            self._reallocate(self.width + columns + GROWTH, shift=0)

    def add_rows(self, kvs: list[torch.Tensor | None]) -> list[int]:
        """Append rows holding each ``kv`` (L, 2, H, n, D) right-aligned; returns their indices.

        All rows are added with one concatenation per layer: adding them one by one would copy
        the whole batch once per row.
        """
        longest = max((0 if kv is None else kv.shape[3]) for kv in kvs)
        if longest > self.width:  # a new prefix is longer than any row: pad every row on the left
            self._reallocate(self.capacity + (longest - self.width), shift=longest - self.width)
        first = self.rows
        for layer in range(len(self.keys)):
            block_k = torch.zeros(len(kvs), *self.keys[layer].shape[1:], dtype=self.dtype, device=self.device)
            block_v = torch.zeros_like(block_k)
            for i, kv in enumerate(kvs):
                if kv is not None and kv.shape[3]:
                    n = kv.shape[3]
                    block_k[i, :, self.width - n:self.width] = kv[layer, 0]
                    block_v[i, :, self.width - n:self.width] = kv[layer, 1]
            self.keys[layer] = torch.cat([self.keys[layer], block_k])
            self.values[layer] = torch.cat([self.values[layer], block_v])
        self.lengths.extend(0 if kv is None else kv.shape[3] for kv in kvs)
        return list(range(first, self.rows))

    def replace_row(self, row: int, kv: torch.Tensor | None) -> None:
        """Put ``kv`` into an existing row (a finished request's slot), right-aligned."""
        n = 0 if kv is None else kv.shape[3]
        if n > self.width:
            self._reallocate(self.capacity + (n - self.width), shift=n - self.width)
        for layer in range(len(self.keys)):
            if kv is not None and n:
                self.keys[layer][row, :, self.width - n:self.width] = kv[layer, 0]
                self.values[layer][row, :, self.width - n:self.width] = kv[layer, 1]
        self.lengths[row] = n

    def extract_row(self, row: int) -> torch.Tensor:
        """A copy of row ``row``'s cache as (L, 2, H, n, D)."""
        n = self.lengths[row]
        lo = self.width - n
        return torch.stack([
            torch.stack([k[row, :, lo:self.width], v[row, :, lo:self.width]])
            for k, v in zip(self.keys, self.values, strict=True)
        ])

    def remove_row(self, row: int) -> None:
        """Drop ``row`` by moving the last row into its place: one row copied, not the batch."""
        last = self.rows - 1
        for bufs in (self.keys, self.values):
            for layer, buf in enumerate(bufs):
                if row != last:
                    buf[row] = buf[last]
                bufs[layer] = buf[:last]  # a view: dropping the last row copies nothing
        self.lengths[row] = self.lengths[last]
        self.lengths.pop()
        if self.width - max(self.lengths, default=0) >= max(COMPACT_MIN, self.width // 4):
            self._compact()

    def _compact(self) -> None:
        """Drop leading columns that are padding in every row."""
        if not self.lengths:
            self.width = 0
            return
        pad = self.width - max(self.lengths)
        if pad <= 0:
            return
        for layer in range(len(self.keys)):
            for buf in (self.keys[layer], self.values[layer]):
                buf[:, :, :self.width - pad] = buf[:, :, pad:self.width].clone()
        self.width -= pad

    def _reallocate(self, capacity: int, shift: int) -> None:
        """New buffers of ``capacity`` columns, old content moved ``shift`` columns right."""
        for layer in range(len(self.keys)):
            for bufs in (self.keys, self.values):
                old = bufs[layer]
                new = torch.zeros(old.shape[0], old.shape[1], capacity, old.shape[3], dtype=self.dtype,
                                  device=self.device)
                new[:, :, shift:shift + self.width] = old[:, :, :self.width]
                bufs[layer] = new
        self.width += shift
