"""`make gpu-check` (benchmarks/gpu_check.sh) on a machine without CUDA, and the sizing it relies on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_without_cuda_stops_at_once_with_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check"
    done = subprocess.run(["bash", str(SCRIPT), str(out)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"gpu-check needs a CUDA device that torch can use, and {sys.executable} finds none here.\n"
    assert not out.exists()  # nothing written


def stage_limits() -> dict[str, int]:
    text = SCRIPT.read_text()
    return {name: int(limit) for name, limit in re.findall(r"^stage ([\w.-]+) (\d+) ", text, flags=re.M)}


def check_plan(name: str = "PLAN") -> list[str]:
    match = re.search(rf"^{name}=\((.*)\)$", SCRIPT.read_text(), flags=re.M)
    assert match is not None
    return match.group(1).split()


def estimates(*args: str) -> list[dict[str, float]]:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--estimate", *args],
                          capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_stage_limits_end_the_check_within_eight_minutes() -> None:
    limits = stage_limits()
    budget = int(re.search(r"BUDGET_S=\$\{BUDGET_S:-(\d+)\}", SCRIPT.read_text()).group(1))  # type: ignore[union-attr]
    bare_node = {name: limit for name, limit in limits.items() if not name.startswith("vllm")}
    assert set(bare_node) == {"info", "estimate", "tests", "hf-1.5b", "hf-7b", "reference-1.5b", "reference-7b",
                              "smc-1.5b"}
    assert sum(bare_node.values()) <= budget
    assert budget + 5 < 8 * 60  # every limit is cut to the budget left; a killed stage gets 5 s more


def test_each_benchmark_stage_fits_its_limit_by_the_estimate() -> None:
    """The estimate of each stage, plus 20 s to start python and build the model, is at most 80%
    of the stage's limit; the 1024-token plan of `make bench-gpu` would not fit."""
    limits = stage_limits()
    plan = check_plan()
    by_stage: dict[str, float] = {}
    for record in estimates(*plan, "--methods", "hf,reference"):
        name = f"{record['method']}-{str(record['model']).removeprefix('qwen2.5-')}"
        by_stage[name] = by_stage.get(name, 0.0) + float(record["estimated_s"])
    assert set(by_stage) == {"hf-1.5b", "hf-7b", "reference-1.5b", "reference-7b"}
    for name, seconds in by_stage.items():
        assert seconds + 20 <= 0.8 * limits[name], (name, seconds)
    full = sum(float(r["estimated_s"]) for r in estimates("--methods", "hf,reference"))
    assert full > 8 * 60


def test_the_smc_stage_fits_its_limit_by_the_estimate() -> None:
    """The SMC pair (N = 8 against k = 8) on its smaller plan, by the same rule; at the check's
    128 tokens one MH chain with k = 8 alone would not fit."""
    limit = stage_limits()["smc-1.5b"]
    plan = check_plan("SMC_PLAN")
    assert plan[plan.index("--smc-k") + 1] == "8" and plan[plan.index("--particles") + 1] == "8"
    [record] = estimates(*plan, "--methods", "smc", "--models", "qwen2.5-1.5b")
    assert record["method"] == "smc" and record["particles"] == 8 and record["k"] == 8
    assert float(record["estimated_s"]) + 20 <= 0.8 * limit
    [at_128] = estimates(*plan, "--max-new-tokens", "128", "--methods", "smc", "--models", "qwen2.5-1.5b")
    assert float(at_128["estimated_s"]) + 20 > 0.8 * limit


def test_the_checkout_travels_in_well_under_64_mib() -> None:
    """What a bare node gets copied: the tracked files (the check needs no wheels)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    paths = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    total = sum(path.stat().st_size for path in paths if path.is_file())
    assert total < 16 * 2**20  # 64 MiB is the limit; a quarter leaves room for wheels


def test_every_gpu_test_is_in_the_module_the_check_runs() -> None:
    """gpu_check.sh runs one module: on a bare node the rest of tests/ does not import (polars)."""
    runs = re.findall(r"-m pytest -m gpu (\S+)", SCRIPT.read_text())
    assert runs == ["tests/sampling/test_gpu.py"]
    marked = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")
                    if re.search(r"pytest\.mark\.gpu\b", path.read_text()))
    assert marked == runs
