# CadSnap: one place for the set-up steps, so README, CI and people run the same thing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch for the training and test stack (the GUI tests run a tiny model on it). pip takes it from PyPI, whose
# Linux wheels are the CUDA build (several GB of nvidia wheels: a ~7 GB venv on Debian 13's Python 3.13),
# unless a CPU wheel is at hand (find-links); TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU
# build from PyTorch's own index instead.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
IMAGE ?= model_runtime/examples/flange.png

.PHONY: run test lint bench setup dev clean model model-cpu retrain jail

# Re-installs when pyproject.toml changes (new dependencies reach existing venvs).
$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel
	$(PIP) install -q -e .
	touch $@

# Patched llama-cpp-python (class-token fix), built once into the user's cache and reused.
$(VENV)/.llama: $(VENV)/.core
	$(PY) -m model_runtime setup
	touch $@

$(VENV)/.dev: $(VENV)/.core
	@test -n "$(TORCH_INDEX)" || echo "note: torch comes from PyPI, the CUDA build on Linux (several GB) unless a CPU wheel is at hand; make dev TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU build"
	$(PIP) install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.llama

# Generated code runs only in a bubblewrap jail on Linux: install it where we may, else say how.
jail:
	@if [ "$$(uname -s)" = Linux ] && ! command -v bwrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing bubblewrap (the jail for generated code)…"; \
	    (apt-get install -y -qq bubblewrap || (apt-get update -qq && apt-get install -y -qq bubblewrap)) >/dev/null; \
	  else \
	    echo "CadSnap runs generated code in a bubblewrap jail: install it first (sudo apt install bubblewrap)," \
	         "or run knowingly without one: CADSNAP_ALLOW_UNCONTAINED=1 make run"; \
	    [ -n "$$CADSNAP_ALLOW_UNCONTAINED" ]; \
	  fi; \
	fi

dev: $(VENV)/.dev $(VENV)/.llama

# The main job on the built-in model: a picture in, a STEP file out.
run: setup jail
	$(PY) -m model_runtime generate $(IMAGE) -o part.step --show-code

test: dev jail
	$(PY) -m ruff check .
	$(PY) -m pytest

# Speed and memory targets live here, not in timed tests; reports land in out/bench/.
bench: dev
	$(PY) -m training.bench.sandbox --out out/bench
	$(PY) -m training.bench.hostile --out out/bench
	$(PY) -m training.bench.backends --out out/bench
	$(PY) -m training.bench.workbench --out out/bench
	$(PY) -m training.bench_synth --out out/bench
	$(PY) -m training.bench_search --data training/eval_oof --evaluations 0,10,20,60,120 --out out/bench/search
	$(PY) -m training.bench.feature_tree --n 535 --composed 100 --out out/bench  # needs FreeCAD

# Regenerate the data and retrain the built-in model into model_runtime/models: 60k samples (about
# 40 min on 2 cores, faster with SYNTH_WORKERS on a bigger machine), then one run of the compact preset
# on a CUDA GPU (about 8 min on an H100). Resumable: run it again after an interruption.
# See model_runtime/models/MODEL_CARD.md.
RUNS ?= runs
SYNTH_WORKERS ?= 2
BATCH_WORKERS ?= 7
model: dev
	$(PY) -m training.train_compact --synth 60000 --synth-family-share 1 --synth-workers $(SYNTH_WORKERS) --data data/synth-v2 \
		--out $(RUNS)/compact-gpu --preset compact --batch-size 64 --workers $(BATCH_WORKERS) --lr 1e-3 \
		--warmup-steps 300 --vision-lr-scale 0.3 --max-steps 6600 --eval-every 1100 --eval-samples 8 \
		--export model_runtime/models

# The CPU recipe (about 2.5 h on 2 cores): the smaller preset on 24k samples in two cosine cycles, the
# second warm-started from the first; it gives the previous built-in model (mean IoU 0.47, not 0.7).
model-cpu: dev
	$(PY) -m training.train_compact --synth 24000 --synth-family-share 1 --data data/synth-v1 --out $(RUNS)/compact \
		--preset small --max-steps 3300 --warmup-steps 100
	$(PY) -m training.train_compact --data data/synth-v1 --out $(RUNS)/compact-2 --init-from $(RUNS)/compact \
		--preset small --lr 5e-4 --warmup-steps 50 --max-steps 3000 --eval-every 500 --eval-samples 8 \
		--export model_runtime/models

# The retrain in one command, for a CUDA machine (defaults sized for 16 cores): data made on the fly by
# cores - 2 processes while the model trains for 10 minutes, GGUF export, evaluation out of family and
# in family, a report; installs into model_runtime/models only if the new model beats the current one
# out of family. Resumable: the run lives in ~/.cache/cadsnap/retrain/run; run it again after a stop.
# RETRAIN_ARGS passes options (--minutes 20 --install never ...). See model_runtime/models/MODEL_CARD.md.
RETRAIN_ARGS ?=
retrain: dev jail
	$(PY) -m training.retrain $(RETRAIN_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
