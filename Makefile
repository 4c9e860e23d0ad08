# Conveyor: `make demo` runs the seed pipeline end to end; `make test` runs the tests.
# Both install what is missing first (apt packages, .venv, npm packages) and are fast when it is there.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The Node that setup brings when the machine's is missing or too old (scripts/node_tool.py).
export PATH := $(CURDIR)/.tools/node/bin:$(PATH)

.PHONY: setup demo test test-fresh test-unit lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/conveyor demo $(DEMO_FLAGS)

test: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	@# a demo left running holds the ports the end-to-end test's demo needs: stop it first
	@if [ -d .conveyor ]; then echo "test: stopping the demo's platform (conveyor down)"; \
	  $(VENV)/bin/conveyor down >/dev/null; fi
	@export CONVEYOR_TEST_PG_URL=$$(bash scripts/postgres.sh start) && \
	$(PY) -m pytest -q -ra $(PYTEST_ARGS); rc=$$?; bash scripts/postgres.sh stop; exit $$rc

# A clean Debian 12 root, this commit cloned into it, then `make demo` and `make test` inside.
test-fresh:
	@bash scripts/test_fresh.sh

test-unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/engine_overhead.py

clean:
	rm -rf .conveyor test-artifacts bench/results
