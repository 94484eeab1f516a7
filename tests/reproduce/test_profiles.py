"""Profiles: seeds for the compute-matched vote, and the cpu-large profile's size."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dps_cli.errors import UserError
from dps_cli.reproduce.profiles import CPU, PAPER, PROFILES, get_profile
from dps_cli.tasks.arith import NUM_QUESTIONS


def test_temperature_runs_have_enough_seeds_to_match_fixed_k() -> None:
    # a k=8 chain costs about M + 8 M (B + 1) / 4 tokens, a plain sample at most M
    for profile in (CPU, PAPER):
        chain = profile.max_new_tokens * (1 + profile.baseline_k * (profile.blocks + 1) / 4)
        assert len(profile.temperature_seeds) >= chain / profile.max_new_tokens
    assert replace(CPU, vote_seeds=()).temperature_seeds == CPU.seeds


def test_cpu_large_uses_every_arith_question_and_holds_out_half_for_the_controllers() -> None:
    large = get_profile("cpu-large")
    assert "cpu-large" in PROFILES
    assert large.train_questions + large.test_questions == NUM_QUESTIONS
    assert large.controller_test_fraction == 0.5 and len(large.seeds) == 4
    with pytest.raises(UserError, match="controller_test_fraction"):
        replace(large, controller_test_fraction=1.0)
