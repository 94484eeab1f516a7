"""GPU throughput of power sampling: the reference, the ``hf`` backend and the ``vllm`` backend.

A random-weight model of Qwen2.5-7B's shape in bfloat16 (nothing downloaded: the config is written
here; vLLM loads dummy weights with ``load_format="dummy"``, Hugging Face builds the model with
``from_config``). Power sampling with alpha 4, 1024 new tokens in 8 blocks, k = 4, EOS disabled so
every chain does the same work. Prints one JSON line per measurement: proposal tokens/s and peak GPU
memory, for the reference (2 chains, one at a time) and each backend at 64 and 256 chains.
Run with ``make bench-gpu`` on a CUDA machine with vLLM installed (``pip install 'dps-cli[vllm]'``).

Each backend runs in its own process (``--only``), so peak memory and vLLM's memory reservation do
not mix; without ``--only`` this script starts those processes itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
    "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151643, "use_sliding_window": False,
}


def write_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(QWEN25_7B))
    return directory


def prompts(count: int, length: int) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(0)
    return [tuple(int(t) for t in rng.integers(1000, 100000, size=length)) for _ in range(count)]


def run_backend(backend: Any, chains: list[tuple[int, ...]], args: argparse.Namespace) -> dict[str, float]:
    from dps_cli.sampling.policies import FixedK
    from dps_cli.sampling.power import PowerSettings, power_chain

    settings = PowerSettings(alpha=args.alpha, max_new_tokens=args.max_new_tokens, blocks=args.blocks)
    results: list[Any] = []
    start = time.perf_counter()
    backend.run(((i, power_chain(p, settings, FixedK(args.k), np.random.default_rng(i)))
                 for i, p in enumerate(chains)), lambda key, result: results.append(result))
    wall = time.perf_counter() - start
    tokens = sum(r.tokens_generated for r in results)
    return {"tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 2)}


def measure(which: str, args: argparse.Namespace) -> None:
    from dps_cli.sampling.factory import make_backend

    directory = write_config(Path(args.workdir) / "qwen2.5-7b-shape")
    counts = [int(c) for c in args.chains.split(",")]
    common = {"alpha": args.alpha, "max_new_tokens": args.max_new_tokens, "blocks": args.blocks, "k": args.k,
              "device": torch.cuda.get_device_name(0), "model": "Qwen2.5-7B shape, random bf16"}
    if which == "vllm":
        backend = make_backend("vllm", None, (), max_batch=max(counts), model_path=str(directory),
                               vllm_options={"load_format": "dummy", "dtype": "bfloat16",
                                             "max_model_len": args.prompt_len + args.max_new_tokens + 16,
                                             "gpu_memory_utilization": 0.9})
        for count in counts:
            out = run_backend(backend.rebind(max_batch=count), prompts(count, args.prompt_len), args)
            free, total = torch.cuda.mem_get_info()  # vLLM reserves its memory up front, in its own process
            print(json.dumps({"benchmark": "bench_gpu", "backend": "vllm", "chains": count, **out, **common,
                              "peak_gpu_memory_gb": round((total - free) / 2**30, 2),
                              "note": "device-wide use; vLLM reserves gpu_memory_utilization=0.9 up front"}),
                  flush=True)
        backend.close()
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    torch.set_grad_enabled(False)
    if which == "reference":
        from reference import reference_power_chain

        torch.cuda.reset_peak_memory_stats()
        start, tokens = time.perf_counter(), 0
        for i, prompt in enumerate(prompts(args.reference_chains, args.prompt_len)):
            out = reference_power_chain(model, list(prompt), args.alpha, args.max_new_tokens, args.blocks, args.k,
                                        (), np.random.default_rng(i))
            tokens += out["tokens_generated"]
        wall = time.perf_counter() - start
        print(json.dumps({"benchmark": "bench_gpu", "backend": "reference", "chains": args.reference_chains,
                          "tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 2),
                          **common, "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}),
              flush=True)
        return
    for count in counts:
        torch.cuda.reset_peak_memory_stats()
        out = run_backend(make_backend("hf", model, (), max_batch=count), prompts(count, args.prompt_len), args)
        print(json.dumps({"benchmark": "bench_gpu", "backend": "hf", "chains": count, **out, **common,
                          "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", default="64,256")
    parser.add_argument("--reference-chains", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=4.0)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--only", choices=["reference", "hf", "vllm"], default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu needs a CUDA device; `make bench` measures the CPU.")
    if args.only is not None:
        with tempfile.TemporaryDirectory() as workdir:
            args.workdir = args.workdir or workdir
            measure(args.only, args)
        return
    with tempfile.TemporaryDirectory() as workdir:
        for which in ("reference", "hf", "vllm"):
            subprocess.run([sys.executable, __file__, "--only", which, "--workdir", workdir, *sys.argv[1:]],
                           check=False)


if __name__ == "__main__":  # vLLM starts its workers with spawn: nothing may run on import
    main()
