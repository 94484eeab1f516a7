"""Do two runs of the same `dps sample` on different backends agree within sampling error?

Usage: ``python benchmarks/compare_backends.py runs/arith-k4-hf runs/arith-k4-vllm [--model M]``

Per chain: the mean per-token log p of the final completion under the base model (rescored here
with one Hugging Face forward pass, so both runs are measured the same way), the acceptance rate
(accepted / attempted proposals) and the proposal tokens generated. Prints one JSON line per
statistic with each run's mean, its standard error over chains and the z-score of the difference.
Completions are not expected to be equal: the backends draw different random numbers.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dps_cli.models.loading import load_model
from dps_cli.runs.store import RunStore


def mean_logp(model: Any, prompt_ids: list[int], completion: list[int]) -> float:
    """Mean log p of the completion's tokens given the prompt and the tokens before them."""
    ids = torch.tensor([prompt_ids + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()  # (n, V)
    logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
    return float(logp.mean())


def chain_stats(run: Path, loaded: Any) -> dict[str, np.ndarray]:
    rows = RunStore(run).scan().sort("question_id", "seed").collect().to_dicts()
    logps = []
    for row in rows:
        prompt_ids = loaded.tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        if row["completion_ids"]:
            logps.append(mean_logp(loaded.model, list(prompt_ids), list(row["completion_ids"])))
    return {
        "mean_token_logp": np.array(logps),
        "acceptance_rate": np.array([r["proposals_accepted"] / max(r["proposals_attempted"], 1) for r in rows]),
        "proposal_tokens_per_chain": np.array([r["tokens_generated"] for r in rows], dtype=np.float64),
        "tokens_kept": np.array([r["tokens_kept"] for r in rows], dtype=np.float64),
        # features at each chain's last checkpoint (entropy is approximate on vllm: top-K, tail bound)
        "checkpoint_entropy": np.array([r["checkpoints"][-1]["mcmc_entropy"] for r in rows if r["checkpoints"]]),
        "checkpoint_perplexity": np.array([r["checkpoints"][-1]["mcmc_perplexity"] for r in rows
                                           if r["checkpoints"]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs=2, type=Path)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    loaded = load_model(args.model, "cpu", "float32")
    stats = [chain_stats(run, loaded) for run in args.runs]
    names = [str(run) for run in args.runs]
    for key in stats[0]:
        a, b = stats[0][key], stats[1][key]
        se_a, se_b = a.std(ddof=1) / math.sqrt(len(a)), b.std(ddof=1) / math.sqrt(len(b))
        z = (a.mean() - b.mean()) / math.sqrt(se_a**2 + se_b**2) if se_a + se_b > 0 else 0.0
        print(json.dumps({"statistic": key, names[0]: {"mean": round(float(a.mean()), 4), "se": round(float(se_a), 4),
                                                       "chains": len(a)},
                          names[1]: {"mean": round(float(b.mean()), 4), "se": round(float(se_b), 4), "chains": len(b)},
                          "z": round(float(z), 2)}), flush=True)


if __name__ == "__main__":
    main()
