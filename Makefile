# The two commands of the README. Both create or refresh the virtual environment first.
#   make run    the main job on the embedded defaults: `ttrl demo` (SQLite, the tiny model)
#   make test   lint + the whole test suite (SQLite and the local PostgreSQL)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of torch: pip takes it from the local wheel folder where the machine has one,
# and never a multi-GB CUDA build. GPU hosts install ttrl[vllm] instead (see README).
TORCH := torch==2.13.0
WHEELS := $(wildcard /opt/wheels)

.PHONY: run test venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(if $(WHEELS),--find-links $(WHEELS)) "$(TORCH)"
	$(BIN)/pip install -q $(if $(WHEELS),--find-links $(WHEELS)) "$(TORCH)" -e '.[dev,deepspeed,plot]'
	touch $@

run: venv
	$(BIN)/ttrl demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc
