# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?=
# `make test` spreads the suite over this many pytest-xdist workers (CI has 2 cores)
TEST_WORKERS ?= 2

.PHONY: demo test test-fast lint bench bench-arctic bench-paper bench-prepare bench-throughput clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kgcm demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: bench-arctic bench-paper bench-throughput

bench-arctic: $(STAMP)
	$(BIN)/kgcm benchmark --config configs/benchmark-arctic-demo.toml

bench-paper: $(STAMP)
	$(BIN)/kgcm benchmark --config configs/benchmark-paper.toml

bench-prepare: $(STAMP)
	$(BIN)/python benchmarks/prepare_throughput.py

bench-throughput: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
