"""The token sampler's numerics: float64 inverse CDF, no zero-probability token, non-finite logits
and NaN acceptance ratios stop the run, vLLM's length cap never reaches a ratio (tokens.py,
engine.py, power.py, vllm_backend.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama

from dps_cli.errors import UserError
from dps_cli.sampling.engine import Engine
from dps_cli.sampling.power import NonFiniteRatio, log_accept_ratio, sampling_chain
from dps_cli.sampling.requests import Sequence
from dps_cli.sampling.tokens import NonFiniteLogits, sample_step
from dps_cli.sampling.vllm_backend import UnfinishedCompletion, check_finish, check_length

ONE = torch.tensor([1.0])


def step(logits: list[float], u: float, dtype: torch.dtype = torch.float64, temperature: float = 1.0):  # type: ignore[no-untyped-def]
    return sample_step(torch.tensor([logits]), torch.tensor([temperature]), torch.tensor([u], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_uniform_next_to_one_never_returns_a_minus_inf_last_token(dtype: torch.dtype) -> None:
    """1 - 1e-8 rounds to 1.0 in float32; the inverse CDF then used to return the last id."""
    out = step([0.0, 1.0, 0.5, -math.inf], 1 - 1e-8, dtype)
    assert out.tokens == [2]  # the last id with q > 0
    assert math.isfinite(out.logq_proposal[0]) and math.isfinite(out.logp_base[0])
    assert out.logq_proposal[0] == pytest.approx(0.5 - math.log(1 + math.e + math.exp(0.5)))


def test_a_token_too_small_for_a_float32_cdf_is_sampled_in_its_own_interval() -> None:
    """q = (0.5, 0.5 - 1e-9, 1e-9): in float32 the CDF is (0.5, 1, 1) and token 2 is unreachable."""
    logits = [math.log(0.5), math.log(0.5 - 1e-9), math.log(1e-9)]
    out = step(logits, 1 - 0.5e-9)
    assert out.tokens == [2]
    assert out.logq_proposal[0] == pytest.approx(math.log(1e-9), abs=1e-6)
    assert step(logits, 1 - 2e-9).tokens == [1]


def test_uniforms_map_to_the_float64_inverse_cdf_of_the_recorded_law() -> None:
    """Every token returned is the one whose interval of exp(log q) holds u, at every temperature."""
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 6, size=(1, 500)), dtype=torch.float32)
    for temperature in (1.0, 0.25):
        q = torch.softmax(logits.double() / temperature, -1)[0].numpy()
        cdf = np.cumsum(q)
        for u in rng.random(200):
            out = sample_step(logits, torch.tensor([temperature]), torch.tensor([u], dtype=torch.float64))
            token = out.tokens[0]
            assert (cdf[token - 1] if token else 0.0) <= u * cdf[-1] < cdf[token]
            assert out.logq_proposal[0] == pytest.approx(math.log(q[token]), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("logits", [[0.0, math.nan, 1.0], [0.0, math.inf, 1.0], [-math.inf] * 3])
def test_non_finite_logits_stop_the_step(logits: list[float]) -> None:
    with pytest.raises(NonFiniteLogits, match="NaN or infinite logits in 1 of 1 rows"):
        step(logits, 0.5)


def test_a_minus_inf_logit_alone_is_a_mask_and_never_sampled() -> None:
    for u in np.linspace(0, 1 - 1e-12, 50):
        assert step([-math.inf, 0.0, 0.3, -math.inf], float(u)).tokens[0] in (1, 2)


def test_the_engine_names_the_model_and_dtype_when_logits_are_nan() -> None:
    model = build_tiny_llama(16, seed=0, scale=1.0)
    with torch.no_grad():
        model.lm_head.weight[3, 0] = math.nan
    model.config._name_or_path = "tiny-nan"
    drivers = [(0, sampling_chain((1, 2), 4, 0.25, np.random.default_rng(0)))]
    with pytest.raises(NonFiniteLogits) as caught:
        Engine(model, (), max_batch=1).run(drivers, lambda key, result: None)
    message = str(caught.value)
    assert "Model tiny-nan in float32 returned NaN or infinite logits for 1 of 1 sequences" in message
    assert message.count(".") == 1 and message.endswith("--dtype float32).")


def _sequence(logp: list[float], logq: list[float]) -> Sequence:
    n = len(logp)
    return Sequence(np.arange(1 + n), 1, np.asarray(logp, np.float32), np.asarray(logq, np.float32),
                    np.zeros(n, np.float32), np.zeros(n, np.float32))


def test_a_nan_acceptance_ratio_is_an_error_not_a_reject() -> None:
    current = _sequence([-1.0, -2.0], [-0.5, -1.0])
    assert math.isfinite(log_accept_ratio(current, _sequence([-1.0, -3.0], [-0.5, -2.0]), 1, 4.0))
    for proposal in (_sequence([-1.0, math.nan], [-0.5, -1.0]), _sequence([-1.0, -math.inf], [-0.5, -math.inf])):
        with pytest.raises(NonFiniteRatio, match="ratio of a proposal from position 1 is NaN"):
            log_accept_ratio(current, proposal, 1, 4.0)


def test_vllm_finishes_are_accepted_only_at_eos_or_the_requested_length() -> None:
    check_finish([5, 2], "stop", 4, eos=(2,))  # EOS
    check_finish([5, 6, 7, 8], "length", 4, eos=(2,))  # the requested length
    check_finish([5, 6, 7, 2], "length", 4, eos=(2,))  # both
    for tokens, reason in (([5, 6], "length"), ([5, 6, 7, 8], "abort"), ([], "length"), ([5, 6], None)):
        with pytest.raises(UnfinishedCompletion, match=f"after {len(tokens)} of 4 tokens without EOS"):
            check_finish(tokens, reason, 4, eos=(2,))


def test_a_request_past_max_model_len_is_refused_in_one_sentence_naming_max_new_tokens() -> None:
    check_length(start=10, max_new=54, max_model_len=64)
    with pytest.raises(UserError) as caught:
        check_length(start=10, max_new=55, max_model_len=64)
    message = str(caught.value)
    assert "max_model_len of 64" in message and "--max-new-tokens" in message
    assert message.count(".") == 1 and message.endswith("at most 64.")


@pytest.mark.vllm
def test_vllm_refuses_a_request_that_max_model_len_would_cut(vllm_pool) -> None:  # type: ignore[no-untyped-def]
    """The test engine has max_model_len 64: a 1-token prompt and 64 new tokens would be capped."""
    from backend_fixtures import TINY_SCALE, TINY_SEED, TINY_VOCAB, build_vllm_tiny_llama

    model = build_vllm_tiny_llama(TINY_VOCAB, TINY_SEED, TINY_SCALE)
    backend = vllm_pool.get((TINY_VOCAB, TINY_SEED, TINY_SCALE), model).rebind(eos_token_ids=(), max_batch=2)
    results: dict[int, object] = {}
    backend.run([(0, sampling_chain((1,), 63, 1.0, np.random.default_rng(0)))], results.__setitem__)
    assert len(results[0].completion_ids) == 63  # type: ignore[attr-defined]
    with pytest.raises(UserError, match="exceeds the vLLM engine's max_model_len of 64"):
        backend.run([(1, sampling_chain((1,), 64, 1.0, np.random.default_rng(0)))], results.__setitem__)
