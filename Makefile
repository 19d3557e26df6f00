# Two entry points, both self-contained on a fresh machine (see README):
#   make demo   - bootstrap .venv, then run the offline demo on the embedded defaults
#   make test   - bootstrap .venv, then run the whole test suite
# and the checks CI adds (.ci/run):
#   make lint         - ruff (lint + format) on the tree, mypy --strict on the library
#   make wheel-check  - build the wheel, install it into a fresh venv, run the demo and a scan from it
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.provbot-installed

.PHONY: demo test bench install lint wheel-check clean

install: $(STAMP)

# torch is named first and pinned so pip takes the CPU wheel on disk instead of a CUDA build.
# AutoGPTQ and AutoAWQ are the tests' reference packers of GPTQ and AWQ weights. Only their
# pure-Python packing is used; their declared dependencies (triton, CUDA-era pins) are not wanted.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0 -e '.[test,lint]'
	$(VENV)/bin/pip install -q --no-deps auto-gptq==0.7.1 autoawq==0.2.9
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=0 $(VENV)/bin/provbot demo

test: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# ruff on the whole tree; mypy --strict on the library, seen through a folder of links laid out as
# installed (provbot/detectors), which is how users import it.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	rm -rf build/mypy && mkdir -p build/mypy/provbot
	ln -s $(CURDIR)/detectors build/mypy/provbot/detectors
	cd build/mypy && MYPYPATH=$(CURDIR)/build/mypy $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p provbot.detectors

# Needs no .venv: makes a throwaway venv with PYTHON, builds the wheel with its pip and installs it there.
wheel-check:
	PYTHON=$(PYTHON) .ci/wheel-check

bench: $(STAMP)
	$(VENV)/bin/python bench/scan_bench.py

clean:
	rm -rf $(VENV) .pytest_cache build dist
