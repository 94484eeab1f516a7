"""Proposal tokens/s of the dps backends against the reference algorithm, same model and settings.

Prints one JSON line with the reference's rate and, side by side, each backend's rate (``hf`` and,
when vLLM is installed, ``vllm``), their ratios to the reference, wall time per chain and peak RSS;
then one JSON line per backend with its tokens/s at several chain counts. Run with ``make bench``
(which uses the vLLM environment of ``make test-vllm`` so both backends run in one process).

Settings (issue #2): embedded SmolLM2-135M, 16 chains = 8 MATH500 questions x 2 seeds, alpha 4,
max-new-tokens 192, blocks 4, k 4. The reference runs one chain at a time, so its rate is measured
on the first ``--reference-chains`` chains (a rate per token does not depend on how many chains it
runs sequentially).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import reference_power_chain  # noqa: E402

from dps_cli.models.loading import load_model  # noqa: E402
from dps_cli.sampling.factory import make_backend, vllm_available  # noqa: E402
from dps_cli.sampling.policies import FixedK  # noqa: E402
from dps_cli.sampling.power import PowerSettings, power_chain  # noqa: E402
from dps_cli.tasks import get_task  # noqa: E402
from dps_cli.tasks.prompting import build_prompt  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chain_prompts(loaded, bench: str, questions: int, seeds: int) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    task = get_task(bench)
    prompts = []
    for question in task.load(None)[:questions]:
        for seed in range(seeds):
            _, ids = build_prompt(loaded.tokenizer, task, question, task.choice_order(question, seed))
            prompts.append(tuple(ids))
    return prompts


def run_engine(loaded, prompts, args, batch: int, backend=None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Run every prompt as one power chain; ``backend`` (a started vllm backend) or the hf one."""
    settings = PowerSettings(alpha=args.alpha, max_new_tokens=args.max_new_tokens, blocks=args.blocks,
                             eos_token_ids=loaded.eos_token_ids)
    results = []
    if backend is None:
        engine = make_backend("hf", loaded.model, loaded.eos_token_ids, max_batch=batch)
    else:
        engine = backend.rebind(eos_token_ids=loaded.eos_token_ids, max_batch=batch)
    start = time.perf_counter()
    engine.run(((i, power_chain(p, settings, FixedK(args.k), np.random.default_rng(i)))
                for i, p in enumerate(prompts)), lambda key, result: results.append(result))
    wall = time.perf_counter() - start
    tokens = sum(r.tokens_generated for r in results)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "chains": len(prompts)}


def run_reference(loaded, prompts, args) -> dict[str, float]:  # type: ignore[no-untyped-def]
    start, tokens = time.perf_counter(), 0
    for i, prompt in enumerate(prompts):
        out = reference_power_chain(loaded.model, list(prompt), args.alpha, args.max_new_tokens, args.blocks,
                                    args.k, loaded.eos_token_ids, np.random.default_rng(i))
        tokens += out["tokens_generated"]
    wall = time.perf_counter() - start
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "chains": len(prompts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--bench", default="math500", help="task whose prompts are used (needs its data)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=4.0)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--reference-chains", type=int, default=4)
    parser.add_argument("--scaling", default="1,4,16,64", help="chain counts for the engine scaling line")
    parser.add_argument("--scaling-max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--backends", default="hf,vllm" if vllm_available() else "hf",
                        help="backends to measure side by side (default: hf, and vllm when installed)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    loaded = load_model(args.model, args.device, args.dtype)
    prompts = chain_prompts(loaded, args.bench, args.questions, args.seeds)
    scale_counts = [int(c) for c in args.scaling.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    reference = run_reference(loaded, prompts[: args.reference_chains], args)
    line = {
        "benchmark": "engine_vs_reference", "device": loaded.device, "dtype": loaded.dtype,
        "model": loaded.source.model_id, "chains": len(prompts), "alpha": args.alpha,
        "max_new_tokens": args.max_new_tokens, "blocks": args.blocks, "k": args.k,
        "reference_tokens_per_s": round(reference["tokens_per_s"], 2),
        "reference_wall_s_per_chain": round(reference["wall_s"] / reference["chains"], 2),
        "reference_chains_measured": reference["chains"], "peak_rss_mb_after_reference": round(peak_rss_mb()),
    }
    scaling: dict[str, dict[str, float]] = {}
    scale_args = argparse.Namespace(**{**vars(args), "max_new_tokens": args.scaling_max_new_tokens})
    for name in backends:
        started = time.perf_counter()
        backend = None if name == "hf" else make_backend(
            name, loaded.model, loaded.eos_token_ids, max_batch=max([len(prompts), *scale_counts]),
            vllm_options={"dtype": loaded.dtype, "max_model_len": 4096})
        startup = time.perf_counter() - started
        engine = run_engine(loaded, prompts, args, batch=len(prompts), backend=backend)
        line.update({
            f"{name}_tokens_per_s": round(engine["tokens_per_s"], 2),
            f"{name}_ratio": round(engine["tokens_per_s"] / reference["tokens_per_s"], 2),
            f"{name}_wall_s_per_chain": round(engine["wall_s"] / engine["chains"], 2),
            f"{name}_startup_s": round(startup, 1), f"peak_rss_mb_after_{name}": round(peak_rss_mb()),
        })
        scaling[name] = {}
        for count in scale_counts:
            chains = [prompts[i % len(prompts)] for i in range(count)]
            rate = run_engine(loaded, chains, scale_args, batch=count, backend=backend)["tokens_per_s"]
            scaling[name][str(count)] = round(rate, 2)
        if backend is not None:
            backend.close()
    print(json.dumps(line), flush=True)
    for name, rates in scaling.items():
        print(json.dumps({"benchmark": "engine_scaling", "backend": name, "device": loaded.device,
                          "max_new_tokens": args.scaling_max_new_tokens, "blocks": args.blocks, "k": args.k,
                          "tokens_per_s_by_chains": rates}), flush=True)


if __name__ == "__main__":  # vLLM starts its workers with spawn: nothing may run on import
    main()
