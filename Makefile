# Two commands from a fresh clone, each making .venv and installing what it needs on the way:
#
#   make quickstart    a real benchmark (suites/quickstart.yaml)
#   make test          the test suite (what CI runs)
#
# Only Python >= 3.10 and make are assumed. torch: the one .venv can already import (with
# `make VENV_FLAGS=--system-site-packages`, the torch you have installed), else a CUDA build
# where `nvidia-smi` finds a GPU, else the CPU build (PyTorch's CPU index where it is
# reachable; a plain `torch` requirement would pull a multi-GB CUDA build). Data: a mirror
# beside the checkout (../shared/data) or $HARNESS_DATA_DIR, else the Hugging Face Hub.
# Debian packages where it can (apt as root): chromium (the report test), libtcmalloc-minimal4 (cells).

PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin

DATA_DIR := $(or $(HARNESS_DATA_DIR),$(wildcard $(abspath ..)/shared/data))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

ifneq ($(DATA_DIR),)
export HARNESS_DATA_DIR := $(DATA_DIR)
endif

.PHONY: quickstart test install torch browser tcmalloc

quickstart: $(VENV)/.installed tcmalloc
	$(BIN)/harness run suites/quickstart.yaml

test: $(VENV)/.installed browser tcmalloc
	$(BIN)/python -m pytest -q

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(MAKE) --no-print-directory torch
	$(BIN)/pip install -q -e ".[test]"
	touch $@

torch:
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "torch: keeping $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q torch==$(TORCH_VERSION); \
	elif $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/', timeout=5)" 2>/dev/null; then \
		$(BIN)/pip install -q torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple; \
	else \
		$(BIN)/pip install -q torch==$(TORCH_VERSION); \
	fi

# The cells run on tcmalloc where it is installed (less memory than glibc's heap at the same
# speed: docs/benchmarks.md, "Memory against Keras"); without it they run on the C library's malloc.
tcmalloc:
	@$(BIN)/python -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('tcmalloc_minimal') is None)" || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 || true; \
		else \
			echo "cells use the C library's malloc; for less memory: sudo apt-get install libtcmalloc-minimal4"; \
		fi; }

# The HTML report test drives a real headless Chromium (Debian's package, never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq chromium; \
		else \
			echo "the report test needs Chromium: sudo apt-get install chromium (Debian/Ubuntu), or put a chromium on PATH"; exit 2; \
		fi; }
