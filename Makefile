# CadSnap: one place for the set-up steps, so README, CI and people run the same thing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch; a bare `torch` in a fresh venv may pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
IMAGE ?= model_runtime/examples/flange.png

.PHONY: run test lint bench setup dev clean

$(VENV)/.core:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel
	$(PIP) install -q -e .
	touch $@

# Patched llama-cpp-python (class-token fix), built once into the user's cache and reused.
$(VENV)/.llama: $(VENV)/.core
	$(PY) -m model_runtime setup
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.llama

dev: $(VENV)/.dev $(VENV)/.llama

# The main job on the built-in model: a picture in, a STEP file out.
run: setup
	$(PY) -m model_runtime generate $(IMAGE) -o part.step --show-code

test: dev
	$(PY) -m ruff check .
	$(PY) -m pytest

# Speed and memory targets live here, not in timed tests; reports land in out/bench/.
bench: dev
	$(PY) -m model_runtime.bench.sandbox --out out/bench
	$(PY) -m model_runtime.bench.backends --out out/bench
	$(PY) -m model_runtime.bench.workbench --out out/bench
	$(PY) -m training.bench_synth --out out/bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
