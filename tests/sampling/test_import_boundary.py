"""The import boundary `make gpu-check` relies on: the sampling core runs on numpy, torch and
transformers alone.

A bare GPU node has those (and pytest, safetensors, pyarrow, rich, typer, scipy, scikit-learn) but
not polars, catboost, math-verify, gguf or datasets. In a fresh interpreter where those five cannot
be imported (and any attempt is recorded), `dps_cli.sampling` with every module in it, the
reference algorithm and the GPU benchmarks (with the SMC pair) are imported and one power chain runs; every top-level
module they load beyond what numpy, torch and transformers load for the same model must belong to
the standard library. The GPU tests are collected in the same conditions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU_TESTS = ["tests/sampling/test_gpu.py"]  # what benchmarks/gpu_check.sh runs with -m gpu

BLOCKER = """
import importlib.abc, sys
BLOCKED = ("polars", "catboost", "math_verify", "gguf", "datasets")
attempts = []

class Unavailable(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError(f"{name} is not installed on this node")
        return None

sys.meta_path.insert(0, Unavailable())
"""

CORE = BLOCKER + """
import json, pkgutil, importlib
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig

def top_level():
    return {name.split(".")[0] for name in sys.modules}

torch.manual_seed(0)
config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                     eos_token_id=2, bos_token_id=0, pad_token_id=0)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
with torch.inference_mode():
    model(torch.tensor([[1, 2, 3]]))
    model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=True, pad_token_id=0)
before = top_level()

import dps_cli.sampling
for info in pkgutil.iter_modules(dps_cli.sampling.__path__):
    importlib.import_module(f"dps_cli.sampling.{info.name}")
sys.path.insert(0, "benchmarks")
import reference, bench_gpu, smc_vs_mh
from dps_cli.sampling.factory import make_backend
from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain

settings = PowerSettings(alpha=4.0, max_new_tokens=8, blocks=2, eos_token_ids=(2,))
results = []
make_backend("hf", model, (2,), max_batch=4).run(
    [(0, power_chain((1, 5, 7), settings, FixedK(2), np.random.default_rng(0)))],
    lambda key, result: results.append(result))
reference.reference_power_chain(model, [1, 5, 7], 4.0, 8, 2, 2, (2,), np.random.default_rng(0))
new = top_level() - before - set(sys.stdlib_module_names) - {"dps_cli", "reference", "bench_gpu", "smc_vs_mh"}
print(json.dumps({"attempts": attempts, "new": sorted(new), "chains": len(results),
                  "generated": len(results[0].completion_ids)}))
"""

COLLECT = BLOCKER + """
import pytest
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-m", "gpu", *sys.argv[1:]])
print("ATTEMPTS", attempts)
sys.exit(int(code))
"""


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_sampling_core_imports_only_numpy_torch_transformers_and_runs_a_chain() -> None:
    out = run_python(CORE)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []  # not even an import guarded by try/except
    assert report["new"] == []
    assert report["chains"] == 1 and 1 <= report["generated"] <= 8


def test_gpu_tests_collect_without_the_missing_packages() -> None:
    out = run_python(COLLECT, *GPU_TESTS)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ATTEMPTS []" in out.stdout
    assert " tests collected" in out.stdout or " test collected" in out.stdout
