"""Synthetic collect tables with a planted label signal, built in memory (no model, no runs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from dps_cli.controllers.table import TABLE_SCHEMA, write_table

WIDTH = 16


def planted_table(
    signal: str,
    questions: int = 300,
    seeds: int = 2,
    ks: Sequence[int] = (2, 4, 6, 8),
    blocks: Sequence[int] = (2, 4, 6),
    width: int = WIDTH,
    seed: int = 0,
) -> pl.DataFrame:
    """A table whose ``enough`` label is a deterministic function of the named signal.

    ``signal``: "entropy" (scalar only), "entropy+hidden" (scalar plus a direction of the
    hidden state) or "question" (a direction of the question embedding only).
    """
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=width)
    direction /= np.linalg.norm(direction)
    embeddings = rng.normal(size=(questions, width)).astype(np.float32)
    records: dict[str, list[object]] = {name: [] for name in TABLE_SCHEMA.names}
    for q in range(questions):
        for s in range(seeds):
            for k in ks:
                for block in blocks:
                    hidden = rng.normal(size=width).astype(np.float32)
                    entropy = float(rng.uniform(0.0, 2.0))
                    score = _score(signal, entropy, hidden, embeddings[q], direction)
                    enough = bool(score > 0)
                    row = {
                        "run_id": f"run-k{k}", "task": "arith", "model": "tiny-test-model",
                        "alpha": 4.0, "question_id": f"q{q:04d}", "seed": s, "k": k,
                        "checkpoint_block": block,
                        "mcmc_perplexity": float(rng.uniform(1.0, 3.0)),
                        "mcmc_entropy": entropy,
                        "mcmc_self_confidence": float(rng.uniform(0.3, 1.0)),
                        "acceptance_ratio": float(rng.uniform(0.0, 1.0)),
                        "question_time_sec": float(block * k),
                        "current_k": k, "hidden": hidden.tolist(),
                        "question_embedding": embeddings[q].tolist(), "hidden_layer": 1,
                        "correct": enough, "correct_k8": True, "enough": enough,
                        "wall_time_s": float(10 * k),
                    }  # fmt: skip
                    for name, value in row.items():
                        records[name].append(value)
    return pl.from_arrow(pa_table(records))  # type: ignore[return-value]


def pa_table(records: dict[str, list[object]]):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.table(records, schema=TABLE_SCHEMA)


def write_planted(path: Path, signal: str, **kwargs: object) -> Path:
    """Write `planted_table` to ``path`` in the collect format."""
    write_table(planted_table(signal, **kwargs), path)  # type: ignore[arg-type]
    return path


def _score(
    signal: str, entropy: float, hidden: np.ndarray, question: np.ndarray, d: np.ndarray
) -> float:
    if signal == "entropy":
        return 1.0 - entropy
    if signal == "entropy+hidden":
        return (1.0 - entropy) * 2.0 + float(hidden @ d)
    if signal == "question":
        return float(question @ d)
    raise ValueError(signal)


def table_from_rows(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    """A collect table from partial rows; unnamed columns get neutral defaults."""
    defaults: dict[str, object] = {
        "run_id": "run", "task": "arith", "model": "tiny-test-model", "alpha": 4.0,
        "seed": 0, "checkpoint_block": None, "mcmc_perplexity": 1.5, "mcmc_entropy": 0.5,
        "mcmc_self_confidence": 0.5, "acceptance_ratio": 0.5, "question_time_sec": None,
        "current_k": None, "hidden": None, "question_embedding": None, "hidden_layer": None,
        "correct": True, "correct_k8": True, "enough": True, "wall_time_s": 1.0,
    }  # fmt: skip
    records: dict[str, list[object]] = {name: [] for name in TABLE_SCHEMA.names}
    for row in rows:
        full = {**defaults, "current_k": row.get("k"), **row}
        for name in TABLE_SCHEMA.names:
            records[name].append(full[name])
    return pl.from_arrow(pa_table(records))  # type: ignore[return-value]
