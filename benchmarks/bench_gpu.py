"""GPU throughput of power sampling: the reference algorithm and the sampling backends.

Random-weight models of Qwen2.5-1.5B's and Qwen2.5-7B's shape in bfloat16, nothing downloaded: the
configs are written here; Hugging Face builds the model with ``from_config``, vLLM loads dummy
weights (``load_format="dummy"``). Power sampling with alpha 4, 1024 new tokens in 8 blocks, k = 4,
EOS disabled so every chain does the same work. One JSON line per measurement: proposal tokens/s,
wall time and peak GPU memory; the reference runs 2 chains one at a time, each backend 64 and 256.

``--methods`` names what is measured (``reference``, ``hf``, ``vllm``, ``smc``; a new sampler is one
more entry in `METHODS`). ``smc`` is the pair of benchmarks/smc_vs_mh.py on the ``hf`` backend:
Power-SMC with ``--particles`` N against MH with ``--smc-k`` proposals per block (same alpha, new
tokens and blocks), latency on the first ``--alone`` of ``--questions`` random prompts and
throughput with all of them in flight (N x questions sequences at once), EOS disabled. Each (model, method) pair runs in its own process (``--only``), so peak memory
and vLLM's up-front reservation do not mix; without ``--only`` this script starts those processes.
``make gpu-check`` (benchmarks/gpu_check.sh) runs the pairs itself, each under its own time limit.

Sizing (``--estimate`` prints it, no GPU needed): a chain generates
T = N + k * sum_b (b N / B + 1) / 2 tokens (N new tokens in B blocks; a proposal regenerates the
suffix after a uniform start, on average half the current length), 10,256 at the defaults. A
batched backend takes about T decode steps whatever the number of chains, each costing the larger
of its FLOPs (2 x parameters + attention per token, times the chains) at `FLOPS` and its bytes
(weights plus the chains' keys/values) at `BANDWIDTH`, plus `STEP_OVERHEAD_S` of kernel launches
(eager decoding of 28 layers is launch-bound at small batches). The reference makes every token a
batch-of-one step. An SMC chain takes about N steps (new tokens) at a batch of its particles. The constants are an H100's, derated; the first GPU run's wall times replace
them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from dps_cli.config import SMC_DEFAULT_CHUNK, SMC_DEFAULT_ESS  # noqa: E402

_QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu", "torch_dtype": "bfloat16",
    "bos_token_id": 151643, "eos_token_id": 151643, "use_sliding_window": False,
}
MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": {**_QWEN2, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "qwen2.5-7b": {**_QWEN2, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "tie_word_embeddings": False},
}
# H100 SXM, derated: 989 TFLOP/s dense bfloat16 at 40%, 3.35 TB/s at 75%, ~0.35 ms of launches per
# eager layer step (28 layers); the reference adds model.generate's own per-token work.
FLOPS = 0.4 * 989e12
BANDWIDTH = 0.75 * 3.35e12
LAYER_LAUNCH_S = 0.35e-3
GENERATE_OVERHEAD_S = 2e-3
BYTES = 2  # bfloat16


def tokens_per_chain(max_new_tokens: int, blocks: int, k: int) -> float:
    """Expected tokens one power chain generates (module docstring)."""
    size = max_new_tokens / blocks
    return max_new_tokens + k * sum((b * size + 1) / 2 for b in range(1, blocks + 1))


def shape_costs(config: dict[str, Any], context: float) -> tuple[float, float, float]:
    """(FLOPs per token, weight bytes, key/value bytes per token of context) of a Qwen2 shape."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    head_dim = h // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter  # q, o; k, v; gate, up, down
    matmul = layers * per_layer + h * config["vocab_size"]  # + lm_head
    embeddings = config["vocab_size"] * h * (1 if config["tie_word_embeddings"] else 2)
    flops = 2 * matmul + 4 * layers * h * context  # scores and weighted values over the context
    return flops, (layers * per_layer + embeddings) * BYTES, layers * 2 * kv * BYTES


def estimate_seconds(model: str, method: str, chains: int, max_new_tokens: int, blocks: int, k: int,
                     prompt_len: int) -> float:
    """Estimated wall time of one measurement (module docstring), without model construction."""
    config = MODELS[model]
    steps = tokens_per_chain(max_new_tokens, blocks, k)
    flops, weights, kv_per_token = shape_costs(config, prompt_len + max_new_tokens / 2)
    launches = config["num_hidden_layers"] * LAYER_LAUNCH_S
    if method == "reference":  # one token at a time, every call re-encodes its prefix
        per_token = launches + GENERATE_OVERHEAD_S + max(flops / FLOPS, weights / BANDWIDTH)
        reencoded = (k + 1) * blocks * (prompt_len + max_new_tokens / 2)
        return chains * (steps * per_token + reencoded * flops / FLOPS)
    return batched_seconds(model, steps, chains, max_new_tokens, prompt_len)


def batched_seconds(model: str, steps: float, batch: int, max_new_tokens: int, prompt_len: int) -> float:
    """Estimated wall time of ``steps`` batched decode steps of ``batch`` sequences."""
    config = MODELS[model]
    flops, weights, kv_per_token = shape_costs(config, prompt_len + max_new_tokens / 2)
    launches = config["num_hidden_layers"] * LAYER_LAUNCH_S
    batch = max(1, batch)
    memory = weights + batch * kv_per_token * (prompt_len + max_new_tokens)
    return steps * (launches + max(batch * flops / FLOPS, memory / BANDWIDTH))


def smc_seconds(model: str, args: argparse.Namespace) -> float:
    """Estimated wall time of the smc pair: the warm-up runs, the questions alone, then all in flight."""
    n, blocks, k, particles = args.max_new_tokens, args.blocks, args.smc_k, args.particles

    def pair(new_tokens: int, questions: int) -> float:
        mh = batched_seconds(model, tokens_per_chain(new_tokens, blocks, k), questions, new_tokens, args.prompt_len)
        return mh + batched_seconds(model, new_tokens, questions * particles, new_tokens, args.prompt_len)

    return pair(2 * blocks, 1) + min(args.alone, args.questions) * pair(n, 1) + pair(n, args.questions)


def write_config(directory: Path, model: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(MODELS[model]))
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


def emit(record: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": "bench_gpu", **record}), flush=True)


def hf_model(directory: Path) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    torch.set_grad_enabled(False)
    # the first calls pay for CUDA's and cuBLAS's start-up: not part of any measurement
    ids = torch.ones(2, 8, dtype=torch.long, device=model.device)
    model.generate(ids, max_new_tokens=4, do_sample=True, pad_token_id=0)
    torch.cuda.synchronize()
    return model


def peak_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def measure_reference(directory: Path, common: dict[str, Any], args: argparse.Namespace) -> None:
    from reference import reference_power_chain

    model = hf_model(directory)
    new_tokens = args.reference_max_new_tokens or args.max_new_tokens
    torch.cuda.reset_peak_memory_stats()
    start, tokens = time.perf_counter(), 0
    for i, prompt in enumerate(prompts(args.reference_chains, args.prompt_len)):
        out = reference_power_chain(model, list(prompt), args.alpha, new_tokens, args.blocks, args.k, (),
                                    np.random.default_rng(i))
        tokens += out["tokens_generated"]
    wall = time.perf_counter() - start
    emit({"method": "reference", "chains": args.reference_chains, "tokens": tokens, "wall_s": round(wall, 2),
          "tokens_per_s": round(tokens / wall, 2), **common, "max_new_tokens": new_tokens,
          "peak_gpu_memory_gb": peak_gb()})


def measure_hf(directory: Path, common: dict[str, Any], args: argparse.Namespace) -> None:
    from dps_cli.sampling.factory import make_backend

    model = hf_model(directory)
    for count in chain_counts(args):
        torch.cuda.reset_peak_memory_stats()
        out = run_backend(make_backend("hf", model, (), max_batch=count), prompts(count, args.prompt_len), args)
        emit({"method": "hf", "chains": count, **out, **common, "peak_gpu_memory_gb": peak_gb()})


def measure_vllm(directory: Path, common: dict[str, Any], args: argparse.Namespace) -> None:
    from dps_cli.sampling.factory import make_backend

    counts = chain_counts(args)
    backend: Any = make_backend("vllm", None, (), max_batch=max(counts), model_path=str(directory),
                                vllm_options={"load_format": "dummy", "dtype": "bfloat16",
                                              "max_model_len": args.prompt_len + args.max_new_tokens + 16,
                                              "gpu_memory_utilization": 0.9})
    for count in counts:
        out = run_backend(backend.rebind(max_batch=count), prompts(count, args.prompt_len), args)
        free, total = torch.cuda.mem_get_info()  # vLLM reserves its memory up front, in its own process
        emit({"method": "vllm", "chains": count, **out, **common,
              "peak_gpu_memory_gb": round((total - free) / 2**30, 2),
              "note": "device-wide use; vLLM reserves gpu_memory_utilization=0.9 up front"})
    backend.close()


def smc_pair(model: Any, prompt_ids: list[tuple[int, ...]], common: dict[str, Any],
             args: argparse.Namespace) -> list[dict[str, Any]]:
    """benchmarks/smc_vs_mh.py's latency and throughput lines for ``model`` on the ``hf`` backend."""
    from smc_vs_mh import measure_pair, settings_of

    from dps_cli.sampling.factory import make_backend

    mine = {key: value for key, value in common.items() if key not in ("k", "blocks")}  # the plan's MH k
    pair = argparse.Namespace(alpha=args.alpha, max_new_tokens=args.max_new_tokens, blocks=args.blocks,
                              k=args.smc_k, particles=args.particles, chunk=args.chunk, ess=args.ess,
                              batch=len(prompt_ids) * args.particles)
    lines = measure_pair(lambda batch: make_backend("hf", model, (), max_batch=batch),
                         prompt_ids, (), pair,
                         {**mine, "backend": "hf", **settings_of(pair)}, alone=args.alone)
    return [{**line, "method": "smc"} for line in lines]


def measure_smc(directory: Path, common: dict[str, Any], args: argparse.Namespace) -> None:
    """Both lines carry the peak GPU memory of the whole pair (SMC's N-wide batches set it)."""
    model = hf_model(directory)
    torch.cuda.reset_peak_memory_stats()
    for line in smc_pair(model, prompts(args.questions, args.prompt_len), common, args):
        print(json.dumps({**line, "peak_gpu_memory_gb": peak_gb()}), flush=True)


METHODS: dict[str, Callable[[Path, dict[str, Any], argparse.Namespace], None]] = {
    "reference": measure_reference, "hf": measure_hf, "vllm": measure_vllm, "smc": measure_smc,
}


def chain_counts(args: argparse.Namespace) -> list[int]:
    return [int(c) for c in args.chains.split(",")]


def measure(model: str, method: str, args: argparse.Namespace) -> None:
    import transformers

    directory = write_config(Path(args.workdir) / model, model)
    common = {"model": f"{model} shape, random bf16", "alpha": args.alpha, "max_new_tokens": args.max_new_tokens,
              "blocks": args.blocks, "k": args.k, "prompt_len": args.prompt_len,
              "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cuda": torch.version.cuda, "transformers": transformers.__version__}
    METHODS[method](directory, common, args)


def estimates(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The plan's estimated wall times, one record per measurement (no GPU needed)."""
    out = []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            if method == "smc":
                out.append({"model": model, "method": method, "questions": args.questions, "alone": args.alone,
                            "particles": args.particles, "k": args.smc_k, "max_new_tokens": args.max_new_tokens,
                            "estimated_s": round(smc_seconds(model, args), 1)})
                continue
            counts = [args.reference_chains] if method == "reference" else chain_counts(args)
            new_tokens = (args.reference_max_new_tokens or args.max_new_tokens) if method == "reference" \
                else args.max_new_tokens
            for count in counts:
                seconds = estimate_seconds(model, method, count, new_tokens, args.blocks, args.k, args.prompt_len)
                out.append({"model": model, "method": method, "chains": count, "max_new_tokens": new_tokens,
                            "tokens": round(count * tokens_per_chain(new_tokens, args.blocks, args.k)),
                            "estimated_s": round(seconds, 1)})
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--methods", default="reference,hf,vllm,smc", help="comma-separated: " + ", ".join(METHODS))
    p.add_argument("--chains", default="64,256", help="chains per backend measurement, comma-separated")
    p.add_argument("--reference-chains", type=int, default=2)
    p.add_argument("--reference-max-new-tokens", type=int, default=None,
                   help="new tokens of the reference's chains (default: --max-new-tokens)")
    p.add_argument("--alpha", type=float, default=4.0)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--particles", type=int, default=8, help="smc: SMC particles N")
    p.add_argument("--smc-k", type=int, default=8, help="smc: MH proposals per block")
    p.add_argument("--chunk", type=int, default=SMC_DEFAULT_CHUNK, help="smc: SMC tokens per round")
    p.add_argument("--ess", type=float, default=SMC_DEFAULT_ESS, help="smc: SMC resampling threshold rho")
    p.add_argument("--questions", type=int, default=8, help="smc: random prompts in flight for throughput")
    p.add_argument("--alone", type=int, default=1, help="smc: of those, timed one at a time for latency")
    p.add_argument("--only", choices=list(METHODS), default=None, help="measure one method of one model here")
    p.add_argument("--estimate", action="store_true", help="print the estimated wall times and exit")
    p.add_argument("--workdir", default=None)
    return p


def main() -> None:
    args = parser().parse_args()
    unknown = sorted(set(args.models.split(",")) - set(MODELS)) + sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        sys.exit(f"bench_gpu: unknown model or method {', '.join(unknown)}; models: {', '.join(MODELS)}; "
                 f"methods: {', '.join(METHODS)}.")
    if args.estimate:
        for record in estimates(args):
            emit({"estimate": True, **record})
        return
    if not torch.cuda.is_available():
        sys.exit("bench_gpu needs a CUDA device; `make bench` measures the CPU.")
    if args.only is not None:
        if args.only == "vllm" and importlib.util.find_spec("vllm") is None:
            sys.exit("bench_gpu: vLLM is not installed here; the vllm measurement needs it.")
        with tempfile.TemporaryDirectory() as workdir:
            args.workdir = args.workdir or workdir
            for model in args.models.split(","):
                measure(model, args.only, args)
        return
    for model in args.models.split(","):
        for method in args.methods.split(","):
            if method == "vllm" and importlib.util.find_spec("vllm") is None:
                continue
            # the last occurrence of an option wins: these two override any given before
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", method, "--models", model],
                           check=False)


if __name__ == "__main__":  # vLLM starts its workers with spawn: nothing may run on import
    main()
