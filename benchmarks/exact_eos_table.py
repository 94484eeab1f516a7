"""The exact distance of the power sampler's law from p^alpha when completions end at EOS.

Prints one JSON line per schedule (blocks, ``--after-eos``): the total-variation distance between
exact p^alpha and the chain's law after k proposals per block, for k = 2, 20, 40 and the limit
(k = 2000), computed by transition matrices (tests/sampling/exact_chain.py), so with no sampling
noise. The model is the one tests/sampling/test_power_eos_distribution.py samples on both backends:
a 2-layer random Llama with a 4-token vocabulary whose EOS has 6-41% per step, a 1-token prompt,
4 new tokens, alpha 2. Takes a few seconds on a CPU.

    python benchmarks/exact_eos_table.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "sampling")]

from backend_fixtures import build_vllm_tiny_llama  # noqa: E402
from exact_chain import chain_law, tiny_law  # noqa: E402
from test_power_eos_distribution import ALPHA, CONFIGS, EOS, NEW, PROMPT, SCALE, SEED, VOCAB, tv  # noqa: E402

KS = (2, 20, 40)
LIMIT_K = 2000


def main() -> None:
    law = tiny_law(build_vllm_tiny_llama(VOCAB, SEED, SCALE), PROMPT, VOCAB, EOS, NEW, ALPHA)
    power = law.power()
    by_length = [round(sum(m for x, m in power.items() if len(x) == n), 3) for n in range(1, NEW + 1)]
    print(json.dumps({"target_mass_by_length": by_length, "completions": len(power)}))
    for blocks, after_eos in CONFIGS:
        row = {f"k{k}": round(tv(chain_law(law, blocks, after_eos, k), power), 3) for k in KS}
        row["limit"] = round(tv(chain_law(law, blocks, after_eos, LIMIT_K), power), 3)
        print(json.dumps({"blocks": blocks, "after_eos": after_eos, "tv_to_p_alpha": row}))


if __name__ == "__main__":
    main()
