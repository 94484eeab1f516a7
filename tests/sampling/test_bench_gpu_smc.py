"""bench_gpu.py's ``smc`` method: the SMC-vs-MH pair of benchmarks/smc_vs_mh.py on its own model, here a
tiny random one on the CPU (the GPU run builds a Qwen2.5 shape instead)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_gpu  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=2, bos_token_id=0, pad_token_id=0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def test_smc_is_a_default_method_of_make_bench_gpu() -> None:
    args = bench_gpu.parser().parse_args([])
    assert "smc" in args.methods.split(",") and "smc" in bench_gpu.METHODS
    assert (args.particles, args.smc_k, args.alpha) == (8, 8, 4.0)


def test_smc_pair_times_n_particles_against_k_proposals(tiny_model: torch.nn.Module,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = bench_gpu.parser().parse_args(["--max-new-tokens", "8", "--blocks", "2", "--particles", "3",
                                          "--smc-k", "2", "--chunk", "4", "--alone", "1"])
    prompt_ids = [(1, 5, 7, 9), (3, 4, 6, 8)]
    with torch.inference_mode():
        lines = bench_gpu.smc_pair(tiny_model, prompt_ids, {"model": "tiny"}, args)
    latency, throughput = lines
    settings = {"method": "smc", "benchmark": "smc_vs_mh", "backend": "hf", "model": "tiny", "alpha": 4.0,
                "max_new_tokens": 8, "mh_k": 2, "mh_blocks": 2, "smc_particles": 3, "smc_chunk": 4}
    assert latency.items() >= {**settings, "measure": "latency", "questions": 1}.items()
    assert throughput.items() >= {**settings, "measure": "throughput", "questions": 2, "batch": 6,
                                  "mh_in_flight": 2, "smc_in_flight": 6}.items()
    # EOS is off: every SMC particle generates all 8 tokens; MH regenerates suffixes on top of its 8
    assert throughput["smc_tokens_per_question"] >= 3 * 8
    assert throughput["mh_tokens_per_question"] > 8
    assert latency["smc_s_per_question"] > 0 and latency["mh_s_per_question"] > 0
    assert "latency: question 1" not in capsys.readouterr().err  # only the first question alone
