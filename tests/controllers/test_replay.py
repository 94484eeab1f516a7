"""The tau replay on a hand-made table with a scripted controller: exact accuracy, k and time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from dps_cli.controllers.card import TauPoint
from dps_cli.controllers.features import CheckpointFeatures
from dps_cli.controllers.replay import TAUS, recommend_tau, tau_sweep
from tests.controllers.planted import table_from_rows


class ScriptedController:
    """Returns the table's mcmc_self_confidence as p_enough, so the test scripts every decision."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_p_enough(self, batch: Sequence[CheckpointFeatures]) -> np.ndarray:
        self.calls += 1
        return np.array([f.scalars["mcmc_self_confidence"] for f in batch])


# question -> k -> (correct, p_enough at block 1, p_enough at block 2); time at block b is k*b,
# wall time is 4k. "qC" at k=2 ended before block 1; "qD" has no k=6 run (skipped).
SCRIPT = {
    "qA": {2: (False, 0.2, 0.5), 4: (True, 0.5, 0.9), 6: (True, 0.5, 0.5), 8: (True, 0.5, 0.5)},
    "qB": {k: (True, 0.96, 0.96) for k in (2, 4, 6, 8)},
    "qC": {2: (True, None, None), 4: (False, 0.5, 0.5), 6: (False, 0.5, 0.5), 8: (True, 0.5, 0.5)},
    "qD": {2: (True, 0.5, 0.5), 4: (True, 0.5, 0.5), 8: (True, 0.5, 0.5)},
}  # fmt: skip


def scripted_table():  # type: ignore[no-untyped-def]
    rows = []
    for qid, runs in SCRIPT.items():
        for k, (correct, p1, p2) in runs.items():
            base = {"question_id": qid, "k": k, "correct": correct, "wall_time_s": 4.0 * k}
            if p1 is None:  # stopped at EOS before the first checkpoint
                rows.append({**base, "wall_time_s": 1.0})
                continue
            for block, p in ((1, p1), (2, p2)):
                rows.append(
                    {**base, "checkpoint_block": block, "mcmc_self_confidence": p,
                     "question_time_sec": float(k * block)}
                )  # fmt: skip
    return table_from_rows(rows)


def test_replay_follows_the_scripted_path_exactly() -> None:
    controller = ScriptedController()
    sweep = tau_sweep(controller, scripted_table(), taus=(0.05, 0.3, 0.9))
    assert controller.calls == 1  # one batched prediction for the whole table
    assert sweep.pairs == 3 and sweep.skipped_pairs == 1
    by_tau = {p.tau: p for p in sweep.points}
    # tau=0.05: qA 2->4 (b1) ->6 (b2), time 2 + (8-4) + (24-12) = 18; qB stays at 2 (8 s);
    # qC ended before block 1 at k=2 (1 s).
    assert by_tau[0.05].accuracy == 1.0
    assert by_tau[0.05].mean_final_k == pytest.approx(10 / 3)
    assert by_tau[0.05].relative_time == pytest.approx(27 / 96)
    # tau=0.3: qA 2->4 at block 1 only: 2 + 4 + (16 - 8) = 14.
    assert by_tau[0.3].accuracy == 1.0
    assert by_tau[0.3].mean_final_k == pytest.approx(8 / 3)
    assert by_tau[0.3].relative_time == pytest.approx(23 / 96)
    # tau=0.9: nobody escalates; qA ends wrong at k=2.
    assert by_tau[0.9].accuracy == pytest.approx(2 / 3)
    assert by_tau[0.9].mean_final_k == 2.0
    assert by_tau[0.9].relative_time == pytest.approx(17 / 96)
    assert sweep.baseline_accuracy == {
        2: pytest.approx(2 / 3),
        4: pytest.approx(2 / 3),
        6: pytest.approx(2 / 3),
        8: 1.0,
    }
    assert sweep.baseline_relative_time[2] == pytest.approx((8 + 8 + 1) / 96)
    # within 1 point of k=8 (1.0): tau 0.05 and 0.3; the faster is 0.3.
    assert sweep.recommended_tau == 0.3


def test_default_taus_are_point_one_to_point_nine() -> None:
    assert TAUS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_recommend_prefers_larger_tau_on_ties_and_falls_back_to_best_accuracy() -> None:
    tie = [
        TauPoint(0.4, 0.70, 3.0, 0.5),
        TauPoint(0.6, 0.695, 3.0, 0.5),
        TauPoint(0.2, 0.71, 4.0, 0.6),
    ]
    assert recommend_tau(tie, accuracy_k8=0.70) == 0.6
    short = [
        TauPoint(0.1, 0.60, 5.0, 0.8),
        TauPoint(0.5, 0.65, 3.0, 0.4),
        TauPoint(0.9, 0.65, 2.0, 0.3),
    ]
    assert recommend_tau(short, accuracy_k8=0.70) == 0.9
    assert recommend_tau([], accuracy_k8=0.7) is None


def test_sweep_without_complete_pairs_is_empty_with_a_note() -> None:
    table = table_from_rows(
        [{"question_id": "q", "k": 8, "checkpoint_block": 1, "question_time_sec": 1.0}]
    )
    sweep = tau_sweep(ScriptedController(), table)
    assert sweep.points == () and sweep.recommended_tau is None and sweep.skipped_pairs == 1
    assert "No held-out (question, seed) pair has runs at every k of 2, 4, 6, 8" in sweep.note
