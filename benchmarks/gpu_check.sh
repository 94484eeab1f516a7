#!/usr/bin/env bash
# What a GPU run must show, on a bare CUDA node: `make gpu-check`, or `bash benchmarks/gpu_check.sh [DIR]`.
#
# Needs python3 with torch (CUDA), transformers, numpy, pytest and pytest-timeout; installs and
# downloads nothing (the sampling core imports only numpy, torch and transformers:
# tests/sampling/test_import_boundary.py). Stages, each under its own time limit, the next one
# running whatever the last one did:
#   info      device, torch, CUDA and transformers versions
#   estimate  the benchmark plan's estimated wall times (benchmarks/bench_gpu.py --estimate)
#   tests     the tests marked gpu (tests/sampling/test_gpu.py)
#   hf-*, reference-*, vllm-*
#             benchmarks/bench_gpu.py on random-weight Qwen2.5-1.5B- and 7B-shape models in
#             bfloat16; vllm only where it is importable
#   smc-1.5b  Power-SMC (N = 8) against MH (k = 8) on the hf backend, latency and throughput
#             (benchmarks/smc_vs_mh.py's pair, through bench_gpu.py --only smc), SMC_PLAN
# Every limit is also cut to what is left of BUDGET_S, so the whole check ends within 8 minutes.
# Writes DIR/gpu-check.log (everything), DIR/bench.jsonl (one JSON line per measurement),
# DIR/estimate.jsonl and DIR/summary.txt (one line per stage); exits 0 when every stage passed.
#
# Sizing: the benchmark keeps alpha 4, 8 blocks, k = 4, 64 and 256 chains and 2 reference chains,
# but generates 128 new tokens per chain (8 blocks of 16) instead of 1024: a batched backend needs
# about one decode step per token of a chain (10,256 tokens at 1024, 1,296 at 128) whatever the
# number of chains, and the estimate (FLOPs and bytes per step on an H100, plus kernel launches;
# benchmarks/bench_gpu.py) puts the 1024-token plan at about 1,300 s and this one at about 160 s,
# each stage's estimate plus 20 s of start-up within 80% of its limit. `make bench-gpu` runs the
# 1024-token plan. One MH chain with k = 8 alone takes as many steps as all of them batched, so the
# SMC pair keeps alpha 4 but generates 32 new tokens in 4 blocks, times one question alone and
# puts 8 in flight (about 10 s by the estimate).
set -u

START=$SECONDS
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-465}
PLAN=(--max-new-tokens 128 --blocks 8 --k 4 --alpha 4 --chains 64,256 --reference-chains 2 --prompt-len 128)
SMC_PLAN=(--max-new-tokens 32 --blocks 4 --alpha 4 --smc-k 8 --particles 8 --questions 8 --alone 1 --prompt-len 128)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 TOKENIZERS_PARALLELISM=false \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "gpu-check needs torch, and $PY cannot import it (set PYTHON=/path/to/python with torch)." >&2
    exit 2
fi
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-check needs a CUDA device that torch can use, and $PY finds none here." >&2
    exit 2
fi

mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: > "$LOG"; : > "$OUT/bench.jsonl"; : > "$OUT/estimate.jsonl"; : > "$OUT/summary.txt"
FAILED=0

# stage NAME LIMIT_S JSONL CMD...: run CMD under min(LIMIT_S, time left); its stdout goes to the
# log and, when JSONL is not "-", to that file too; a line per stage goes to summary.txt.
stage() {
    local name=$1 limit=$2 jsonl=$3 left status rc began
    shift 3
    left=$((BUDGET_S - (SECONDS - START)))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        status="skipped: no time left"
        FAILED=1
    else
        echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
        began=$SECONDS
        if [[ $jsonl == - ]]; then
            timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
            rc=${PIPESTATUS[0]}
        else
            timeout --kill-after=5 "$limit" "$@" 2>>"$LOG" | tee -a "$LOG" "$jsonl"
            rc=${PIPESTATUS[0]}
        fi
        case $rc in
            0) status="ok" ;;
            124 | 137) status="timed out after ${limit}s" ;;
            *) status="failed (exit $rc)" ;;
        esac
        status="$status in $((SECONDS - began))s"
        [[ $rc == 0 ]] || FAILED=1
    fi
    printf '%-16s %s\n' "$name" "$status" | tee -a "$OUT/summary.txt" "$LOG"
}

stage info 17 - "$PY" -c '
import importlib.util, torch, transformers
print("device:", torch.cuda.get_device_name(0), "(%.0f GiB)" % (torch.cuda.get_device_properties(0).total_memory / 2**30))
print("torch:", torch.__version__, " CUDA:", torch.version.cuda, " transformers:", transformers.__version__)
print("vllm:", "importable" if importlib.util.find_spec("vllm") else "not installed (its benchmark is skipped)")'
stage estimate 10 "$OUT/estimate.jsonl" "$PY" benchmarks/bench_gpu.py --estimate --methods hf,reference "${PLAN[@]}"
stage tests 95 - "$PY" -m pytest -m gpu tests/sampling/test_gpu.py -q -p no:cacheprovider --timeout 90 \
    --junitxml "$OUT/gpu-tests.xml"
stage hf-1.5b 65 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only hf --models qwen2.5-1.5b "${PLAN[@]}"
stage hf-7b 85 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only hf --models qwen2.5-7b "${PLAN[@]}"
stage reference-1.5b 70 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only reference --models qwen2.5-1.5b "${PLAN[@]}"
stage reference-7b 85 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only reference --models qwen2.5-7b "${PLAN[@]}"
stage smc-1.5b 38 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only smc --models qwen2.5-1.5b "${SMC_PLAN[@]}"
if "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("vllm") is None)'; then
    stage vllm-1.5b 150 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only vllm --models qwen2.5-1.5b "${PLAN[@]}"
    stage vllm-7b 150 "$OUT/bench.jsonl" "$PY" benchmarks/bench_gpu.py --only vllm --models qwen2.5-7b "${PLAN[@]}"
fi

echo "gpu-check: $((SECONDS - START))s; log, JSON lines and summary in $OUT/" | tee -a "$LOG"
exit $FAILED
