"""Replay the DPS policy on fixed-k logs to pick the escalation threshold tau.

For each held-out (question, seed) that has runs at every k of the ladder 2, 4, 6, 8: start at
k=2; at each checkpoint block, in increasing order, ask the controller for p_enough on the
features of the run at the current k at that block, and raise k by 2 (at most 8) when
``1 - p_enough > tau``. The answer is the final k's run's answer.

Time is an approximation, recorded in every card (`card.TIME_MODEL`): the segment between two
successive checkpoints costs the ``question_time_sec`` elapsed between them in the run at the k in
force, and the final k adds its remaining time, ``wall_time_s`` minus its ``question_time_sec`` at
the last checkpoint reached. A run that ended before a checkpoint block ends the path there. A
real DPS chain extends one trajectory instead of switching between runs, so the figure is an
estimate of the cost of the k path, not a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dps_cli.config import K_SCHEDULE
from dps_cli.controllers.base import PEnoughModel
from dps_cli.controllers.card import TauPoint, TauSweep
from dps_cli.controllers.table import checkpoint_features, checkpoint_rows

if TYPE_CHECKING:
    import polars as pl

TAUS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
ACCURACY_TOLERANCE = 0.01  # a tau qualifies when it is within 1 point of fixed k=8


@dataclass
class RunLog:
    """One fixed-k sample of one (question, seed): its outcome and its checkpoints."""

    correct: bool
    wall_time_s: float
    time_at: dict[int, float] = field(default_factory=dict)  # block -> question_time_sec
    p_enough: dict[int, float] = field(default_factory=dict)  # block -> controller output


@dataclass(frozen=True)
class ReplayOutcome:
    """Where the policy ended for one (question, seed)."""

    final_k: int
    correct: bool
    time_s: float


def replay_pair(runs: dict[int, RunLog], tau: float) -> ReplayOutcome:
    """Run the policy once for one (question, seed); ``runs`` maps every ladder k to its log."""
    k = K_SCHEDULE.start
    elapsed = 0.0
    last: int | None = None
    blocks = sorted({b for run in runs.values() for b in run.time_at})
    for block in blocks:
        run = runs[k]
        if block not in run.time_at:
            if any(b > block for b in run.time_at):
                continue
            break  # this run finished before the block: the chain is done
        elapsed += run.time_at[block] - (run.time_at.get(last, 0.0) if last is not None else 0.0)
        last = block
        k = K_SCHEDULE.next_k(k, run.p_enough[block], tau)
    final = runs[k]
    done = final.time_at.get(last, final.wall_time_s) if last is not None else 0.0
    elapsed += max(0.0, final.wall_time_s - done)
    return ReplayOutcome(final_k=k, correct=final.correct, time_s=elapsed)


def recommend_tau(points: Sequence[TauPoint], accuracy_k8: float) -> float | None:
    """The fastest tau within 1 point of fixed k=8 (ties: larger tau); else the most accurate."""
    if not points:
        return None
    close = [p for p in points if p.accuracy >= accuracy_k8 - ACCURACY_TOLERANCE - 1e-12]
    if close:
        return min(close, key=lambda p: (p.relative_time, -p.tau)).tau
    return min(points, key=lambda p: (-p.accuracy, p.relative_time, -p.tau)).tau


def tau_sweep(model: PEnoughModel, frame: pl.DataFrame, taus: Sequence[float] = TAUS) -> TauSweep:
    """Replay every tau over the (question, seed) pairs of ``frame`` (a collect table)."""
    logs, skipped = _run_logs(model, frame)
    if not logs:
        return TauSweep((), None, {}, {}, 0, skipped, _no_pairs_note(skipped))
    total_k8 = sum(runs[K_SCHEDULE.max].wall_time_s for runs in logs.values())
    baseline_accuracy = {
        k: float(np.mean([runs[k].correct for runs in logs.values()])) for k in K_SCHEDULE.ladder()
    }
    baseline_time = {
        k: _ratio(sum(runs[k].wall_time_s for runs in logs.values()), total_k8) for k in K_SCHEDULE.ladder()
    }
    points = []
    for tau in taus:
        outcomes = [replay_pair(runs, tau) for runs in logs.values()]
        points.append(
            TauPoint(
                tau=float(tau),
                accuracy=float(np.mean([o.correct for o in outcomes])),
                mean_final_k=float(np.mean([o.final_k for o in outcomes])),
                relative_time=_ratio(sum(o.time_s for o in outcomes), total_k8),
            )
        )
    note = f"{skipped} (question, seed) pair(s) lack a run at some k; skipped." if skipped else ""
    return TauSweep(
        points=tuple(points),
        recommended_tau=recommend_tau(points, baseline_accuracy[K_SCHEDULE.max]),
        baseline_accuracy=baseline_accuracy,
        baseline_relative_time=baseline_time,
        pairs=len(logs),
        skipped_pairs=skipped,
        note=note,
    )


def _run_logs(
    model: PEnoughModel, frame: pl.DataFrame
) -> tuple[dict[tuple[str, int], dict[int, RunLog]], int]:
    """Group the table into per-pair, per-k logs with the controller's predictions filled in."""
    logs: dict[tuple[str, int], dict[int, RunLog]] = {}
    for qid, seed, k, correct, wall in (
        frame.select("question_id", "seed", "k", "correct", "wall_time_s")
        .unique(subset=["question_id", "seed", "k"], keep="first")
        .iter_rows()
    ):
        logs.setdefault((qid, seed), {})[k] = RunLog(bool(correct), float(wall))
    rows = checkpoint_rows(frame)
    p = model.predict_p_enough(checkpoint_features(rows)) if rows.height else np.zeros(0)
    keys = rows.select("question_id", "seed", "k", "checkpoint_block", "question_time_sec")
    for i, (qid, seed, k, block, seconds) in enumerate(keys.iter_rows()):
        run = logs[(qid, seed)][k]
        run.time_at[block] = float(seconds)
        run.p_enough[block] = float(p[i])
    complete = {key: runs for key, runs in logs.items() if all(k in runs for k in K_SCHEDULE.ladder())}
    return complete, len(logs) - len(complete)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _no_pairs_note(skipped: int) -> str:
    ladder = ", ".join(str(k) for k in K_SCHEDULE.ladder())
    return (
        f"No held-out (question, seed) pair has runs at every k of {ladder} "
        f"({skipped} incomplete); the tau sweep is empty."
    )
