# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall (and rebuild the C extension) only when the metadata or the C source changes.
.make-install: pyproject.toml src/distsys/cache/_clru.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

.make-install-dev: pyproject.toml src/distsys/cache/_clru.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ .make-install

demo: .make-install
	$(BIN)/distsys demo

test: .make-install-dev lint typecheck unit

lint: .make-install-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: .make-install-dev
	$(BIN)/mypy

unit: .make-install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: .make-install-dev
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .make-install .make-install-dev .mypy_cache .ruff_cache .pytest_cache
