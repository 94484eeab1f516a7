"""Hand-made fixed-k power runs of the offline `arith` task, right or wrong on demand."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dps_cli.tasks import get_task
from tests.factories import run_config, sample_row, write_run

QUESTIONS = {q.id: q for q in get_task("arith").load()[:3]}
Q0, Q1, Q2 = QUESTIONS


def checkpoint(block: int, k: int) -> dict[str, Any]:
    """A checkpoint record whose time is k*block seconds and hidden state is [k, block]."""
    return {
        "block": block, "k": k, "mcmc_perplexity": 1.5, "mcmc_entropy": 0.1 * block,
        "mcmc_self_confidence": 0.8, "acceptance_ratio": 0.25,
        "question_time_sec": float(block * k),
        "current_k": k, "hidden": [float(k), float(block)], "p_enough": None, "escalated": False,
    }  # fmt: skip


def make_run(
    root: Path,
    k: int,
    outcomes: Mapping[str, bool],
    name: str | None = None,
    empty: tuple[str, ...] = (),
    **config: Any,
) -> Path:
    """A fixed-k run at ``root/name`` (default ``k<k>``) with two checkpoints per sample.

    ``outcomes`` maps question ids to whether the completion is right; questions in ``empty``
    stopped before their first checkpoint; ``config`` overrides manifest config fields.
    """
    name = name or f"k{k}"
    rows = []
    for qid, ok in outcomes.items():
        answer = QUESTIONS[qid].reference if ok else "99999"
        rows.append(
            sample_row(
                run_id=name, question_id=qid, completion=f"So \\boxed{{{answer}}}.", k_initial=k,
                final_k=k, hidden_layer=1, wall_time_s=10.0 * k, question_embedding=[0.5, -0.5],
                checkpoints=[] if qid in empty else [checkpoint(1, k), checkpoint(2, k)],
                model=config.get("model", "tiny-test-model"),
            )
        )  # fmt: skip
    return write_run(root / name, rows, run_config(k=k, hidden_layer=1, **config))


def ladder_runs(root: Path) -> list[Path]:
    """Runs at k = 2, 4, 6, 8 over Q0..Q2 (Q2 only at k=2; Q1 at k=4 ends before a checkpoint)."""
    return [
        make_run(root, 2, {Q0: False, Q1: False, Q2: True}),
        make_run(root, 4, {Q0: True, Q1: True}, empty=(Q1,)),
        make_run(root, 6, {Q0: True, Q1: False}),
        make_run(root, 8, {Q0: True, Q1: False}),
    ]
