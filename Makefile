# Emporium: the two commands are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
# uv: the one on PATH, else the private copy the bootstrap installs (devstack/bin/bootstrap).
export PATH := $(PATH):$(CURDIR)/.cache/tools/bin
export UV_PYTHON_DOWNLOADS := never
UV := uv run --frozen
PYTEST_FLAGS ?= -q

.PHONY: bootstrap run trace test lint unit contract e2e faults bench lint-imports contract-snapshots clean

bootstrap:
	@devstack/bin/bootstrap

run: bootstrap ## the whole system on http://127.0.0.1:8000 with demo data; Ctrl-C stops it
	@$(UV) python -m emporium_devstack run

trace: ## one trace from make run's Jaeger as a tree: make trace ID=<trace_id> (an order's trace_id)
	@$(UV) python -m emporium_devstack trace $(ID)

test: bootstrap lint ## the checks, then every test: unit, contract, integration (real Kafka + PostgreSQL), end-to-end
	@$(UV) pytest $(PYTEST_FLAGS) devstack/tests libs services gateway tests/observability tests/contract tests/e2e tests/faults tests/deploy

unit: bootstrap
	@for p in catalog inventory orders payments notifications; do \
	  uv run --frozen --package $$p pytest -q services/$$p || exit 1; done
	@uv run --frozen --package gateway pytest -q gateway/tests

contract: bootstrap
	@$(UV) pytest $(PYTEST_FLAGS) tests/contract

e2e: bootstrap
	@$(UV) pytest $(PYTEST_FLAGS) tests/e2e

faults: bootstrap ## every fault scenario against the real stack; prints the invariant table
	@$(UV) python tests/faults/run.py --report .cache/faults-report.json

bench: bootstrap ## open-loop benchmark + references; writes bench/results/{report.md,results.json,*.png}
	@$(UV) python bench/run.py $(BENCH_FLAGS)

lint: bootstrap lint-imports ## ruff (lint and format), mypy --strict, import boundaries
	@$(UV) ruff check --quiet .
	@$(UV) ruff format --check --quiet .
	@$(UV) mypy

lint-imports:
	@$(UV) lint-imports --no-cache

contract-snapshots:
	@UPDATE_CONTRACT_SNAPSHOTS=1 $(UV) pytest -q tests/contract/test_event_contracts.py

clean:
	rm -rf .cache/stack
