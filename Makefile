# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall (and rebuild the compiled modules) only when the build or a compiled source
# changes: the C extension of the cache, and the modules mypyc compiles (setup.py).
COMPILED := $(addprefix src/,$(shell grep -v '^\#' src/distsys/_compiled.txt))
BUILD := pyproject.toml setup.py src/distsys/_compiled.txt src/distsys/cache/_clru.c $(COMPILED)

.make-install: $(BUILD) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

.make-install-dev: $(BUILD) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ .make-install

demo: .make-install
	$(BIN)/distsys demo

test: .make-install-dev lint typecheck unit

lint: .make-install-dev
	$(BIN)/ruff check setup.py src tests benchmarks examples
	$(BIN)/ruff format --check setup.py src tests benchmarks examples

typecheck: .make-install-dev
	$(BIN)/mypy

# The suite on the compiled build, then the tests of the compiled modules' packages on
# their plain Python source (the build without mypyc or a C compiler).
unit: .make-install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	DISTSYS_PURE_PYTHON=1 $(BIN)/python -m pytest -q tests/balancer tests/gateway tests/http $(PYTEST_ARGS)

bench: .make-install-dev
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .make-install .make-install-dev .mypy_cache .ruff_cache .pytest_cache build
	find src -name "*.so" -delete
