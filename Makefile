# Every target sets up what it needs: on a fresh clone `make demo` and `make test` just work.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv bytecode test test-fast test-large test-scale lint format lint-template demo bench ci clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## Create .venv with deltaload, the local runtime and the dev tools

# pip byte-compiles a package it installs from a wheel, not an editable one: without this
# step every command compiles deltaload's own modules again (about 0.12 s) wherever
# PYTHONDONTWRITEBYTECODE is set, as in many containers. Only changed modules are compiled.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src functions

test: bytecode  ## Run the whole test suite (server tests skip when no server is reachable)
	$(BIN)/pytest

test-fast: bytecode  ## Unit tests only
	$(BIN)/pytest tests/unit -q

test-large: bytecode  ## The long property-based profiles (many more hypothesis examples)
	DELTALOAD_HYPOTHESIS_PROFILE=large $(BIN)/pytest tests/unit tests/guarantees

test-scale: bytecode  ## 300 tables, 50 at a time, each replication mode, DMS quotas on (about 30 min)
	DELTALOAD_SCALE=full $(BIN)/pytest tests/guarantees/test_scale.py -s -q

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint-template:  ## sam validate --lint, cfn-lint, sam build (needs python3.13, the Lambda runtime; PATH or pyenv), layer size and checkov
	bash scripts/lint_template.sh

demo: bytecode  ## Load the demo orders table offline and show what each run loaded
	$(BIN)/deltaload demo

BENCH_VENV := .venv-bench

$(BENCH_VENV)/.installed:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet "dlt[parquet,filesystem,sql-database]>=1.31" \
		"sqlalchemy>=2" "connectorx>=0.4.6" "psycopg2-binary>=2.9" "psycopg[binary]>=3.1" "adbc-driver-sqlite>=1.0"
	touch $@

bench: bytecode $(BENCH_VENV)/.installed  ## Benchmarks: the engine (vs dlt), deltaload run end to end, a 300-table tick, commands vs lake size
	$(BIN)/python benchmarks/bench_engine.py --dlt-python $(BENCH_VENV)/bin/python
	$(BIN)/python benchmarks/bench_e2e.py --dlt-python $(BENCH_VENV)/bin/python
	$(BIN)/python benchmarks/bench_tick.py
	$(BIN)/python benchmarks/bench_state.py

ci: lint lint-template  ## What .ci/run runs
	DELTALOAD_REQUIRE_SERVERS=1 $(MAKE) test

clean:  ## Remove the virtual environments, build output and local state
	rm -rf $(VENV) $(BENCH_VENV) .tools .aws-sam .deltaload
