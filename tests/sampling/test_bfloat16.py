"""The ``hf`` engine with bfloat16 weights, as it runs on CUDA, checked on the CPU.

On CUDA the model is loaded in bfloat16 (`dps_cli.models.loading`) and decoded 64 chains at a time
(`config.DEFAULT_BATCH`), while every log-probability the sampler compares is computed in float32
(`tokens.sample_step`). torch runs bfloat16 on the CPU too, so all of that runs here; only the
kernels differ on the GPU (tests/sampling/test_gpu.py runs the same checks there).

Thresholds, allowing for bfloat16:
- recorded log p within 0.02 and log q within 0.08 of a fresh forward pass: bfloat16 keeps 8
  significant bits, so a logit of magnitude 4 moves by up to 2^-8 * 4 = 0.016 between two ways of
  computing it, and log q = log softmax(alpha * logits) moves alpha = 4 times as much (measured on
  this model: 3e-4 and 1.3e-3);
- the chains' law within TV 0.06 of the exact p^alpha of the same bfloat16 model (float32: 0.05),
  the extra 0.01 covering the gap between the engine's cached decoding and the full forward passes
  that give the exact law (the exact laws of the float32 and bfloat16 forms of this model are
  themselves 0.0014 apart).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from backend_fixtures import build_vllm_tiny_llama
from conftest import build_tiny_llama
from exact_chain import tiny_law

from dps_cli.config import DEFAULT_BATCH
from dps_cli.sampling.engine import Engine
from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain

EOS = 2
ALPHA = 4.0
CUDA_BATCH = DEFAULT_BATCH["cuda"]
LOGP_ATOL, LOGQ_ATOL, TV_BF16 = 0.02, 0.08, 0.06


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_tiny_llama(40, seed=0, eos_token_id=EOS, scale=3.0).to(torch.bfloat16)


def run_power(model: Any, max_batch: int, chains: int) -> tuple[dict[Any, Any], int]:
    """Results by key and the most rows any decode step held."""
    settings = PowerSettings(alpha=ALPHA, max_new_tokens=12, blocks=3, eos_token_ids=(EOS,))
    prompts = [tuple(int(t) for t in np.random.default_rng(i).integers(3, 40, size=2 + i % 5)) for i in range(chains)]
    engine = Engine(model, (EOS,), max_batch=max_batch)
    widest = [0]
    forward = engine.forward

    def counting(kv: Any, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] == 1:
            widest[0] = max(widest[0], input_ids.shape[0])
        return forward(kv, input_ids, position_ids)

    engine.forward = counting  # type: ignore[method-assign]
    results: dict[Any, Any] = {}
    engine.run([(i, power_chain(p, settings, FixedK(2), np.random.default_rng(i))) for i, p in enumerate(prompts)],
               results.__setitem__)
    return results, widest[0]


@pytest.fixture(scope="module")
def batch_of_64(model):  # type: ignore[no-untyped-def]
    return run_power(model, CUDA_BATCH, chains=CUDA_BATCH + 6)


def test_bfloat16_engine_fills_the_cuda_batch_and_records_float32_statistics(model, batch_of_64) -> None:  # type: ignore[no-untyped-def]
    results, widest = batch_of_64
    assert len(results) == CUDA_BATCH + 6
    assert widest == CUDA_BATCH  # the batch reached 64 rows and never more
    for result in results.values():
        seq = result.sequence
        assert seq.cache.dtype == torch.bfloat16
        assert seq.logp_base.dtype == seq.logq_proposal.dtype == np.float32
        with torch.no_grad():
            logits = model(torch.from_numpy(seq.tokens)[None]).logits[0].float()
        c = seq.prompt_len
        chosen = torch.from_numpy(seq.tokens[c:])[:, None]
        logp = torch.log_softmax(logits[c - 1:-1], -1).gather(-1, chosen).squeeze(-1).numpy()
        logq = torch.log_softmax(logits[c - 1:-1] * ALPHA, -1).gather(-1, chosen).squeeze(-1).numpy()
        np.testing.assert_allclose(seq.logp_base, logp, atol=LOGP_ATOL)
        np.testing.assert_allclose(seq.logq_proposal, logq, atol=LOGQ_ATOL)
        assert np.all(np.isfinite(seq.logp_base)) and np.all(seq.logp_base <= 0)


def test_bfloat16_engine_is_reproducible(model, batch_of_64) -> None:  # type: ignore[no-untyped-def]
    again, _ = run_power(model, CUDA_BATCH, chains=CUDA_BATCH + 6)
    assert {k: r.sequence.tokens.tolist() for k, r in again.items()} == \
        {k: r.sequence.tokens.tolist() for k, r in batch_of_64[0].items()}


def test_bfloat16_power_sampler_matches_the_exact_power_distribution() -> None:
    """4-token vocabulary, no EOS, 1-token prompt, 3 new tokens: 64 sequences (as in
    test_power_distribution.py, whose float32 threshold is 0.05)."""
    model = build_vllm_tiny_llama(4, seed=4, scale=8.0).to(torch.bfloat16)
    law = tiny_law(model, (1,), 4, eos=-1, new_tokens=3, alpha=ALPHA)
    power, tempered = law.power(), law.tempered()
    chains = 4000
    finals: list[tuple[int, ...]] = []
    settings = PowerSettings(alpha=ALPHA, max_new_tokens=3, blocks=1)
    Engine(model, (), max_batch=512).run(
        ((i, power_chain((1,), settings, FixedK(20), np.random.default_rng(i))) for i in range(chains)),
        lambda key, result: finals.append(tuple(result.completion_ids.tolist())))
    assert len(finals) == chains
    sampled = {x: finals.count(x) / chains for x in set(finals)}

    def tv(a: dict[tuple[int, ...], float], b: dict[tuple[int, ...], float]) -> float:
        return 0.5 * sum(abs(a.get(x, 0.0) - b.get(x, 0.0)) for x in set(a) | set(b))

    assert tv(power, tempered) > 0.3  # the test can tell the two laws apart
    assert tv(sampled, power) < TV_BF16
    assert tv(sampled, tempered) > 0.3
