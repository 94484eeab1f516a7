"""The MH acceptance ratio and the completion invariant, on hand-made sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dps_cli.sampling.power import (
    CutShortCompletion,
    PowerSettings,
    check_completion,
    has_ended,
    log_accept_ratio,
)
from dps_cli.sampling.requests import Sequence

PROMPT_LEN = 2


def seq(logp: list[float], logq: list[float], last_token: int = 7) -> Sequence:
    """A sequence with PROMPT_LEN prompt tokens and the given per-token log-probs."""
    n = len(logp)
    tokens = np.arange(PROMPT_LEN + n)
    if n:
        tokens[-1] = last_token
    return Sequence(tokens, PROMPT_LEN, np.array(logp, np.float32), np.array(logq, np.float32),
                    np.zeros(n, np.float32), np.zeros(n, np.float32), None)


def test_ratio_compares_whole_suffixes_and_corrects_for_a_shorter_proposal() -> None:
    current = seq([-1.0, -1.0, -1.0, -1.0], [-0.5, -0.5, -0.5, -0.5])
    short = seq([-1.0, -0.2], [-0.5, -0.1])  # stopped at EOS after one token of the suffix
    # suffix from position 3 (generated index 1): current has 3 tokens there, the proposal 1
    target = 2.0 * (-0.2 - (-3.0))
    proposal = (-1.5) - (-0.1)
    index = math.log(4 / 2)  # index drawn from 4 generated positions forward, 2 backward
    assert log_accept_ratio(current, short, 3, alpha=2.0) == pytest.approx(target + proposal + index)


def test_index_correction_for_a_longer_proposal() -> None:
    current = seq([-1.0, -0.3], [-0.4, -0.2], last_token=2)  # ended at EOS after 2 tokens
    longer = seq([-1.0, -0.5, -0.5, -0.5, -0.5], [-0.4, -0.6, -0.6, -0.6, -0.6])
    target = 3.0 * (-2.0 - (-0.3))
    proposal = (-0.2) - (-2.4)
    index = math.log(2 / 5)
    assert log_accept_ratio(current, longer, 3, alpha=3.0) == pytest.approx(target + proposal + index)


def test_index_term_vanishes_when_lengths_agree() -> None:
    a = seq([-1.0, -2.0, -0.5], [-0.7, -1.0, -0.2])
    b = seq([-1.0, -0.1, -0.9], [-0.7, -0.3, -0.8])
    expected = 4.0 * ((-1.0) - (-2.5)) + ((-1.2) - (-1.1))
    assert log_accept_ratio(a, b, 3, alpha=4.0) == pytest.approx(expected)


def test_ratio_is_antisymmetric() -> None:
    """log r(x -> y) = -log r(y -> x): the same move read backwards, as detailed balance needs."""
    a = seq([-1.0, -0.3], [-0.4, -0.2], last_token=2)
    b = seq([-1.0, -0.5, -0.25, -0.5], [-0.4, -0.6, -0.1, -0.6])
    assert log_accept_ratio(a, b, 3, 4.0) == pytest.approx(-log_accept_ratio(b, a, 3, 4.0))


def test_has_ended_reads_the_last_generated_token() -> None:
    eos = frozenset({2})
    assert has_ended(seq([-1.0, -0.3], [-1.0, -0.3], last_token=2), eos)
    assert not has_ended(seq([-1.0, -0.3], [-1.0, -0.3], last_token=5), eos)
    assert not has_ended(seq([], []), eos)  # nothing generated yet: the prompt's tokens do not count


def test_completion_invariant_fails_loudly_on_a_cut_short_completion() -> None:
    check_completion(np.array([4, 5, 2]), stopped_at_eos=True, max_new_tokens=8)
    check_completion(np.arange(8), stopped_at_eos=False, max_new_tokens=8)
    with pytest.raises(CutShortCompletion, match="no EOS and is shorter"):
        check_completion(np.arange(5), stopped_at_eos=False, max_new_tokens=8)


def test_settings_refuse_an_unknown_after_eos_mode_and_a_ragged_block_size() -> None:
    with pytest.raises(ValueError, match="after_eos"):
        PowerSettings(alpha=4.0, max_new_tokens=8, blocks=2, after_eos="restart")
    with pytest.raises(ValueError, match="multiple"):
        PowerSettings(alpha=4.0, max_new_tokens=9, blocks=2)
