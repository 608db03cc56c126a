# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch is on disk on these machines; asking for it first keeps pip from pulling a CUDA build.
TORCH := torch==2.13.0

.PHONY: setup system-deps demo test lint bench clean

setup: system-deps $(VENV)/.installed

# Debian packages the built-in data sources read (Fashion-MNIST, fortunes, espeak-ng): installed with apt where
# we are root, otherwise the script says what is missing and how to install it. Quick when already present.
system-deps:
	@bash scripts/system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/genchain demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) genchain-demo .pytest_cache
