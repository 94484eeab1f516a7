"""Power-SMC against MH power sampling on the same questions, backend and machine (issue #20).

Two measurements, each a ratio against MH in the same process:

* latency — wall seconds for one question alone (nothing else in flight): SMC with N particles
  (all N decoded together) against one MH chain with k proposals per block, question by question;
* throughput — proposal tokens/s (every sampled token, rejected proposals and discarded
  particles included) with every question in flight at once, up to ``--batch`` sequences decoding.
  An MH chain is one sequence and an SMC chain N, so with fewer questions than ``--batch`` MH
  leaves the batch part empty (the lines say how full: ``*_in_flight``); use at least
  ``--batch`` questions to compare full batches.

Prints one JSON line per measurement. On the CPU with the embedded model (the defaults):

    python benchmarks/smc_vs_mh.py --questions 4 --max-new-tokens 96 --blocks 4

`bench_gpu.py` calls `measure_pair` with its own model and backends (``make bench-gpu``); the
``--device`` option runs the same pair here on ``cuda`` with a real model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dps_cli.config import PAPER_ALPHA, SMC_DEFAULT_CHUNK, SMC_DEFAULT_ESS  # noqa: E402
from dps_cli.sampling.backend import Backend  # noqa: E402
from dps_cli.sampling.policies import FixedK  # noqa: E402
from dps_cli.sampling.power import PowerSettings, power_chain  # noqa: E402
from dps_cli.sampling.smc import SMCSettings, smc_chain  # noqa: E402

#: backend for a batch size: a fresh ``hf`` engine, or a started vLLM backend rebound
EngineFor = Callable[[int], Backend]


def mh_chains(prompts: Sequence[tuple[int, ...]], args: argparse.Namespace, eos: tuple[int, ...]) -> Iterator[Any]:
    settings = PowerSettings(alpha=args.alpha, max_new_tokens=args.max_new_tokens, blocks=args.blocks,
                             eos_token_ids=eos)
    return ((i, power_chain(p, settings, FixedK(args.k), np.random.default_rng(i))) for i, p in enumerate(prompts))


def smc_chains(prompts: Sequence[tuple[int, ...]], args: argparse.Namespace, eos: tuple[int, ...]) -> Iterator[Any]:
    settings = SMCSettings(alpha=args.alpha, max_new_tokens=args.max_new_tokens, particles=args.particles,
                           chunk=args.chunk, ess_threshold=args.ess, eos_token_ids=eos)
    return ((i, smc_chain(p, settings, np.random.default_rng(i))) for i, p in enumerate(prompts))


def timed_run(engine: Backend, chains: Iterator[Any]) -> tuple[float, int]:
    """Wall seconds and proposal tokens of running ``chains`` to completion."""
    results: list[Any] = []
    start = time.perf_counter()
    engine.run(chains, lambda key, result: results.append(result))
    return time.perf_counter() - start, sum(r.tokens_generated for r in results)


def measure_pair(engine_for: EngineFor, prompts: Sequence[tuple[int, ...]], eos: tuple[int, ...],
                 args: argparse.Namespace, common: dict[str, Any], alone: int | None = None) -> list[dict[str, Any]]:
    """The latency line and the throughput line (JSON-ready dicts) for ``prompts``.

    Latency is timed on the first ``alone`` questions (default all): one MH chain alone takes about as
    long as all of them in flight, so a long plan times fewer alone than it batches."""
    methods = {"mh": (mh_chains, 1), "smc": (smc_chains, args.particles)}
    warm = argparse.Namespace(**{**vars(args), "max_new_tokens": args.blocks * 2})
    for chains, width in methods.values():  # the first run of a shape pays one-off costs
        timed_run(engine_for(width), chains(prompts[:1], warm, eos))
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for index, prompt in enumerate(prompts[:alone]):  # one question alone: MH decodes one sequence, SMC its N
        for name, (chains, width) in methods.items():
            seconds[name].append(timed_run(engine_for(width), chains([prompt], args, eos))[0])
            print(f"latency: question {index} {name} {seconds[name][-1]:.1f}s", file=sys.stderr, flush=True)
    latency = {f"{name}_s_per_question": round(statistics.mean(values), 2) for name, values in seconds.items()}
    per_question_ratio = [s / m for s, m in zip(seconds["smc"], seconds["mh"], strict=True)]
    lines = [{"benchmark": "smc_vs_mh", "measure": "latency", **common, "questions": len(seconds["mh"]), **latency,
              "smc_over_mh": round(statistics.mean(per_question_ratio), 3)}]
    rates: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for name, (chains, _) in methods.items():  # every question in flight
        wall, tokens[name] = timed_run(engine_for(args.batch), chains(prompts, args, eos))
        rates[name] = tokens[name] / wall
        print(f"throughput: {name} {tokens[name]} tokens in {wall:.1f}s", file=sys.stderr, flush=True)
    lines.append({"benchmark": "smc_vs_mh", "measure": "throughput", **common, "questions": len(prompts),
                  "batch": args.batch, **{f"{n}_tokens_per_s": round(r, 2) for n, r in rates.items()},
                  # sequences decoding at once at the start: below the batch, a method is starved
                  **{f"{n}_in_flight": min(len(prompts) * width, args.batch) for n, (_, width) in methods.items()},
                  **{f"{n}_tokens_per_question": round(t / len(prompts), 1) for n, t in tokens.items()},
                  "smc_over_mh": round(rates["smc"] / rates["mh"], 3)})
    return lines


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every line repeats."""
    return {"alpha": args.alpha, "max_new_tokens": args.max_new_tokens, "mh_k": args.k, "mh_blocks": args.blocks,
            "smc_particles": args.particles, "smc_chunk": args.chunk, "smc_ess": args.ess}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pair's settings (shared with `bench_gpu.py`)."""
    parser.add_argument("--alpha", type=float, default=PAPER_ALPHA)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--blocks", type=int, default=4, help="MH blocks")
    parser.add_argument("--k", type=int, default=8, help="MH proposals per block")
    parser.add_argument("--particles", type=int, default=8, help="SMC particles N")
    parser.add_argument("--chunk", type=int, default=SMC_DEFAULT_CHUNK, help="SMC tokens per round")
    parser.add_argument("--ess", type=float, default=SMC_DEFAULT_ESS, help="SMC resampling threshold rho")


def main() -> None:
    from dps_cli.models.loading import load_model
    from dps_cli.sampling.factory import make_backend
    from dps_cli.tasks import get_task
    from dps_cli.tasks.prompting import build_prompt

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--bench", default="arith", help="task whose prompts are used")
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=None,
                        help="sequences decoding at once in the throughput run (default: all of SMC's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    add_arguments(parser)
    args = parser.parse_args()
    args.batch = args.batch or args.questions * args.particles
    torch.set_grad_enabled(False)
    loaded = load_model(args.model, args.device, args.dtype)
    task = get_task(args.bench)
    prompts = [tuple(build_prompt(loaded.tokenizer, task, q, task.choice_order(q, 0))[1])
               for q in task.load(None)[: args.questions]]
    if args.backend == "vllm":
        started = make_backend("vllm", loaded.model, loaded.eos_token_ids, max_batch=args.batch,
                               vllm_options={"dtype": loaded.dtype, "max_model_len": 4096})
        engine_for: EngineFor = lambda batch: started.rebind(max_batch=batch)  # type: ignore[attr-defined]  # noqa: E731
    else:
        engine_for = lambda batch: make_backend("hf", loaded.model, loaded.eos_token_ids, max_batch=batch)  # noqa: E731
    common = {"backend": args.backend, "device": loaded.device, "model": loaded.source.model_id, "bench": args.bench,
              **settings_of(args)}
    for line in measure_pair(engine_for, prompts, loaded.eos_token_ids, args, common):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":  # vLLM starts its workers with spawn: nothing may run on import
    main()
