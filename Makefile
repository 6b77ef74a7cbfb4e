# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install everything, run a federated session on generated data
#   make test   - the same set-up, then lint, import contracts (lint-imports), type check (mypy)
#                 and the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LINTED := $(wildcard src tests bench examples)
# pytest-xdist workers for `make test` (the end-to-end tests spend much of their time waiting on
# processes and sockets, so 2 workers fit a 2-core machine); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(PYTHON)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/kosmos-fl demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports
	$(BIN)/mypy

test: $(STAMP)
	bash scripts/services.sh
	$(BIN)/ruff check $(LINTED)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_prepare.py
	$(BIN)/python bench/bench_federation.py
	$(BIN)/python bench/bench_edge.py

clean:
	rm -rf $(VENV) build *.egg-info
