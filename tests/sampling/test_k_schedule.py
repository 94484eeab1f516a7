"""DPS's k schedule (start 2, step 2, max 8) has one home, `config.K_SCHEDULE`, which the live
policy, the offline tau replay, collect's labels and the profiles all follow."""

from __future__ import annotations

import numpy as np
import pytest

from dps_cli.config import K_SCHEDULE, KSchedule
from dps_cli.controllers.replay import RunLog, replay_pair
from dps_cli.pipeline.collect import REFERENCE_K
from dps_cli.reproduce.profiles import PROFILES
from dps_cli.sampling.policies import DynamicK
from dps_cli.sampling.requests import Decide
from dps_cli.sampling.results import CheckpointRecord


def test_the_schedule_is_the_papers() -> None:
    assert K_SCHEDULE.ladder() == (2, 4, 6, 8)
    assert K_SCHEDULE.next_k(2, p_enough=0.1, tau=0.5) == 4  # 1 - 0.1 > 0.5: escalate
    assert K_SCHEDULE.next_k(2, p_enough=0.9, tau=0.5) == 2  # confident enough: stay
    assert K_SCHEDULE.next_k(8, p_enough=0.0, tau=0.5) == 8  # never beyond the maximum
    assert KSchedule(start=1, step=3, max=7).ladder() == (1, 4, 7)
    with pytest.raises(ValueError, match="multiple of step"):
        KSchedule(start=2, step=4, max=8)


@pytest.mark.parametrize(("p_enough", "expected"), [(0.1, 4), (0.9, 2)])
def test_the_live_policy_follows_the_schedule(p_enough: float, expected: int) -> None:
    policy = DynamicK(tau=0.5)
    assert policy.initial_k == K_SCHEDULE.start
    record = CheckpointRecord(block=1, k=2, mcmc_perplexity=1.0, mcmc_entropy=0.0,
                              mcmc_self_confidence=1.0, acceptance_ratio=0.5, question_time_sec=0.1,
                              current_k=2, hidden=None, question_embedding=None)  # fmt: skip
    decide = policy.decide(record)
    assert isinstance(next(decide), Decide)
    with pytest.raises(StopIteration) as stop:
        decide.send(p_enough)
    assert stop.value.value == (expected, p_enough)


def test_the_replay_follows_the_schedule() -> None:
    # At block 1 the controller is unsure at every k: the replay climbs one rung per checkpoint.
    runs = {k: RunLog(correct=k == 6, wall_time_s=float(k), time_at={1: 0.1, 2: 0.2},
                      p_enough={1: 0.0, 2: 0.0}) for k in K_SCHEDULE.ladder()}  # fmt: skip
    assert replay_pair(runs, tau=0.5).final_k == 6
    assert replay_pair(runs, tau=0.99).final_k == 6
    confident = {k: RunLog(True, 1.0, {1: 0.1}, {1: 1.0}) for k in K_SCHEDULE.ladder()}
    assert replay_pair(confident, tau=0.5).final_k == K_SCHEDULE.start


def test_collect_and_the_profiles_use_the_schedule() -> None:
    assert REFERENCE_K == K_SCHEDULE.max
    for profile in PROFILES.values():
        assert profile.ladder == K_SCHEDULE.ladder() and profile.baseline_k == K_SCHEDULE.max
    assert np.all(np.diff(K_SCHEDULE.ladder()) == K_SCHEDULE.step)
