"""What each `--after-eos` mode (stop, continue, jump) costs and changes, on one machine.

Runs the same `dps sample` once per mode (power sampling on the embedded model, arith by default),
then `dps evaluate`, and prints one JSON line per mode: accuracy, proposal tokens per chain (every
token generated: extensions and proposals), completion length, the share of completions that end
at EOS, and wall time, with the tokens and wall time as ratios to the first mode's. The runs share
the machine and settings, and every chain draws the same random stream in every mode, so a chain
is identical across modes until its state ends: the differences are what the modes do after EOS.
Read the ratios, not the absolute seconds.

    python benchmarks/after_eos.py --limit 16 --seeds 0-1 --k 4 --max-new-tokens 48 --blocks 4

With ``--exact`` it prints instead the three modes on the exact chain of the EOS distribution
tests (tests/sampling/exact_chain.py, no sampling noise): the TV to p^alpha after k = 2, 8, 20, 40
proposals per block and in the limit, and the expected tokens a chain generates at each k.

    python benchmarks/after_eos.py --exact
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl


def dps(*args: str) -> str:
    """Run the dps CLI of this interpreter and return its stdout; fail loudly on an error."""
    done = subprocess.run([sys.executable, "-m", "dps_cli", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"dps {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def measure(mode: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    out = root / mode
    started = time.perf_counter()
    dps("sample", "--bench", args.bench, "--model", args.model, "--method", "power", "--k", str(args.k),
        "--max-new-tokens", str(args.max_new_tokens), "--blocks", str(args.blocks), "--seeds", args.seeds,
        "--limit", str(args.limit), "--hidden-layer", "none", "--after-eos", mode, "--out", str(out))
    wall = time.perf_counter() - started
    summary = json.loads(dps("evaluate", str(out), "--json"))["runs"][0]
    rows = pl.read_parquet(out / "samples" / "*.parquet")
    return {
        "after_eos": mode, "chains": rows.height, "accuracy": summary["accuracy"],
        "proposal_tokens_per_chain": round(float(rows["tokens_generated"].mean()), 1),  # type: ignore[arg-type]
        "completion_tokens": round(float(rows["tokens_kept"].mean()), 1),  # type: ignore[arg-type]
        "ended_at_eos": round(float(rows["stopped_at_eos"].mean()), 3),  # type: ignore[arg-type]
        "acceptance": summary["acceptance_rate"], "wall_s": round(wall, 1),
    }


EXACT_MODELS = {  # name -> (seed, scale, alpha, new tokens) of build_vllm_tiny_llama(4, ...), EOS = 3
    "alpha2": (38, 6.0, 2.0, 4),
}
EXACT_KS = (2, 8, 20, 40)


def exact_rows() -> list[dict[str, object]]:
    """Every mode's TV to p^alpha and expected tokens per chain on the exact chain (no noise)."""
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path[:0] = [str(tests), str(tests / "sampling")]
    from backend_fixtures import build_vllm_tiny_llama  # type: ignore[import-not-found]
    from exact_chain import run_chain, tiny_law, tv  # type: ignore[import-not-found]

    rows: list[dict[str, object]] = []
    for name, (seed, scale, alpha, new) in EXACT_MODELS.items():
        law = tiny_law(build_vllm_tiny_llama(4, seed, scale), (1,), 4, 3, new, alpha)
        for blocks in sorted({2, new}):
            for mode in ("stop", "continue", "jump"):
                outcomes = {k: run_chain(law, blocks, mode, k) for k in EXACT_KS}
                rows.append({
                    "model": name, "blocks": blocks, "after_eos": mode,
                    **{f"tv_k{k}": round(tv(out.law, law.power()), 4) for k, out in outcomes.items()},
                    "tv_limit": round(tv(run_chain(law, blocks, mode, 5000).law, law.power()), 4),
                    **{f"tokens_k{k}": round(out.tokens, 2) for k, out in outcomes.items()},
                })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="arith")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--seeds", default="0-1")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--modes", default="stop,continue,jump", help="comma-separated --after-eos modes")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("--exact", action="store_true", help="the exact-chain table instead (no model run)")
    args = parser.parse_args()
    if args.exact:
        for row in exact_rows():
            print(json.dumps(row), flush=True)
        return
    first: dict[str, object] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            row = measure(mode, args, args.keep or Path(tmp))
            first = first or row
            row["tokens_vs_first"] = round(float(row["proposal_tokens_per_chain"])  # type: ignore[arg-type]
                                           / float(first["proposal_tokens_per_chain"]), 3)  # type: ignore[arg-type]
            row["wall_vs_first"] = round(float(row["wall_s"]) / float(first["wall_s"]), 3)  # type: ignore[arg-type]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
