"""The CUDA path of the ``hf`` engine: the CPU's checks on the GPU's kernels (`make gpu-check`).

Skipped without CUDA (the ``gpu`` marker, tests/conftest.py). Imports only what a bare GPU node has
(tests/sampling/test_import_boundary.py collects this module without polars, catboost, math-verify,
gguf or datasets). What runs:
- the engine in float32 and bfloat16 on a tiny random Llama: recorded statistics against a fresh
  forward pass on the GPU (bfloat16 tolerances as in test_bfloat16.py), caches on the GPU;
- the exact-distribution tests in float32 with the CPU tests' thresholds: without EOS
  (test_power_distribution.py) and with EOS (test_power_eos_distribution.py), 4000 chains each at
  20 proposals a block (one configuration each: the bookkeeping of 4000 chains costs a kernel
  launch per row and layer on the GPU, and the check has about 90 s for all its tests);
- a chain's tokens whatever shares its batch (float32; in bfloat16 the GPU's matrix kernels may
  round differently for another batch size, so there only the same batch is compared);
- hidden-feature extraction: the checkpoint and question vectors equal the CPU's.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import test_power_eos_distribution as eos_case
import torch
from backend_fixtures import Sampler, build_vllm_tiny_llama
from conftest import build_tiny_llama
from exact_chain import chain_law, tiny_law
from test_bfloat16 import LOGP_ATOL, LOGQ_ATOL
from test_power_eos_distribution import SCALE, SEED, close
from test_power_eos_distribution import power_law as eos_power_law
from test_power_eos_distribution import tv as law_tv

from dps_cli.sampling.engine import Engine
from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain

pytestmark = pytest.mark.gpu

DEVICE = "cuda"
EOS = 2
CHAINS = 4000


def prompts(n: int) -> list[tuple[int, ...]]:
    return [tuple(int(t) for t in np.random.default_rng(i).integers(3, 40, size=3 + i)) for i in range(n)]


def run_power(model: Any, max_batch: int, hidden_layer: int | None = None) -> dict[Any, Any]:
    settings = PowerSettings(alpha=4.0, max_new_tokens=16, blocks=4, checkpoints=(2, 4),
                             hidden=hidden_layer is not None, eos_token_ids=(EOS,))
    results: dict[Any, Any] = {}
    drivers = [((i, s), power_chain(p, settings, FixedK(3), np.random.default_rng([i, s])))
               for i, p in enumerate(prompts(5)) for s in range(3)]
    Engine(model, (EOS,), max_batch=max_batch, hidden_layer=hidden_layer).run(drivers, results.__setitem__)
    return results


def tokens(results: dict[Any, Any]) -> dict[Any, list[int]]:
    return {key: result.sequence.tokens.tolist() for key, result in results.items()}


@pytest.fixture(scope="module")
def cpu_model():  # type: ignore[no-untyped-def]
    return build_tiny_llama(40, seed=0, eos_token_id=EOS, scale=3.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_engine_on_cuda_records_what_a_fresh_forward_pass_computes(cpu_model, dtype: torch.dtype) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(cpu_model).to(DEVICE, dtype)
    atol_p, atol_q = (1e-4, 4e-4) if dtype == torch.float32 else (LOGP_ATOL, LOGQ_ATOL)
    results = run_power(model, max_batch=7)
    assert len(results) == 15
    for (i, _), result in results.items():
        seq = result.sequence
        assert tuple(seq.tokens[: len(prompts(5)[i])].tolist()) == prompts(5)[i]
        assert seq.cache.device.type == "cuda" and seq.cache.dtype == dtype
        with torch.no_grad():
            logits = model(torch.from_numpy(seq.tokens)[None].to(DEVICE)).logits[0].float()
        c = seq.prompt_len
        chosen = torch.from_numpy(seq.tokens[c:])[:, None].to(DEVICE)
        logp = torch.log_softmax(logits[c - 1:-1], -1).gather(-1, chosen).squeeze(-1).cpu().numpy()
        logq = torch.log_softmax(logits[c - 1:-1] * 4.0, -1).gather(-1, chosen).squeeze(-1).cpu().numpy()
        np.testing.assert_allclose(seq.logp_base, logp, atol=atol_p)
        np.testing.assert_allclose(seq.logq_proposal, logq, atol=atol_q)


def test_tokens_on_cuda_do_not_depend_on_what_shares_the_batch(cpu_model) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(cpu_model).to(DEVICE)
    alone, shared = run_power(model, max_batch=1), run_power(model, max_batch=7)
    assert tokens(alone) == tokens(shared)
    assert all(alone[key].proposals_accepted == shared[key].proposals_accepted for key in alone)


def test_bfloat16_on_cuda_repeats_itself_in_the_same_batch(cpu_model) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(cpu_model).to(DEVICE, torch.bfloat16)
    assert tokens(run_power(model, max_batch=7)) == tokens(run_power(model, max_batch=7))


def test_hidden_features_on_cuda_equal_the_cpu_ones(cpu_model) -> None:  # type: ignore[no-untyped-def]
    # layer 1 of 2: Hugging Face's last hidden state is after the final norm, the engine's is not
    on_cpu = run_power(cpu_model, max_batch=7, hidden_layer=1)
    model = copy.deepcopy(cpu_model).to(DEVICE)
    on_gpu = run_power(model, max_batch=7, hidden_layer=1)
    assert tokens(on_cpu) == tokens(on_gpu)
    for key, result in on_gpu.items():
        expected = on_cpu[key]
        np.testing.assert_allclose(result.question_embedding, expected.question_embedding, atol=1e-4)
        assert [r.block for r in result.checkpoints] == [r.block for r in expected.checkpoints]
        for got, want in zip(result.checkpoints, expected.checkpoints, strict=True):
            assert got.hidden is not None and got.hidden.shape == (16,)
            np.testing.assert_allclose(got.hidden, want.hidden, atol=1e-4)
        prompt = torch.tensor([prompts(5)[key[0]]], device=DEVICE)
        with torch.no_grad():
            states = model(prompt, output_hidden_states=True).hidden_states[1][0]  # (T, H)
        np.testing.assert_allclose(result.question_embedding, states.mean(0).cpu().numpy(), atol=1e-4)


def cuda_sampler(seed: int, scale: float) -> Sampler:
    return Sampler("hf", build_vllm_tiny_llama(4, seed, scale).to(DEVICE), None)


def power_law(sampler: Sampler, k: int) -> dict[tuple[int, ...], float]:  # as test_power_distribution
    """The law of CHAINS power chains (alpha 4, 3 new tokens, no EOS) after k proposals."""
    finals: list[tuple[int, ...]] = []
    settings = PowerSettings(alpha=4.0, max_new_tokens=3, blocks=1)
    sampler.run(((i, power_chain((1,), settings, FixedK(k), np.random.default_rng(i))) for i in range(CHAINS)),
                eos_token_ids=(), max_batch=512,
                on_done=lambda key, result: finals.append(tuple(result.completion_ids.tolist())))
    assert len(finals) == CHAINS
    return {x: finals.count(x) / CHAINS for x in set(finals)}


def test_power_sampler_on_cuda_matches_the_exact_power_distribution() -> None:
    law = tiny_law(build_vllm_tiny_llama(4, 4, 8.0), (1,), 4, eos=-1, new_tokens=3, alpha=4.0)
    power, tempered = law.power(), law.tempered()
    sampled = power_law(cuda_sampler(4, 8.0), 20)
    assert law_tv(sampled, power) < 0.05
    assert law_tv(sampled, tempered) > 0.3


def test_chains_with_eos_on_cuda_follow_the_exact_chain_to_p_alpha() -> None:
    """Two blocks, ``--after-eos continue`` (whose limit is p^alpha exactly), 20 proposals a block:
    the CPU test's strongest case; the CPU runs the other configurations."""
    law = tiny_law(build_vllm_tiny_llama(eos_case.VOCAB, SEED, SCALE), eos_case.PROMPT, eos_case.VOCAB,
                   eos_case.EOS, eos_case.NEW, eos_case.ALPHA)
    sampled = eos_power_law(cuda_sampler(SEED, SCALE), 20, 2, "continue")
    assert close(sampled, chain_law(law, 2, "continue", 20))
    assert law_tv(sampled, law.power()) < 0.05
