# Emporium: the two commands are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
# uv: the one on PATH, else the private copy the bootstrap installs (devstack/bin/bootstrap).
export PATH := $(PATH):$(CURDIR)/.cache/tools/bin
export UV_PYTHON_DOWNLOADS := never
UV := uv run --frozen
PYTEST_FLAGS ?= -q

.PHONY: bootstrap run trace test test-service lint unit contract e2e faults bench lint-imports lint-docker contract-snapshots clean

bootstrap:
	@devstack/bin/bootstrap

run: bootstrap ## the whole system on http://127.0.0.1:8000 with demo data; Ctrl-C stops it
	@$(UV) python -m emporium_devstack run

trace: ## one trace from make run's Jaeger as a tree: make trace ID=<trace_id> (an order's trace_id)
	@$(UV) python -m emporium_devstack trace $(ID)

test: bootstrap lint ## the checks, then every test: unit, contract, integration (real Kafka + PostgreSQL), end-to-end
	@$(UV) pytest $(PYTEST_FLAGS) devstack/tests bench libs services gateway tests/observability tests/deploy tests/contract tests/e2e tests/faults

TEST_SERVICES := catalog inventory orders payments notifications gateway

test-service: ## one team's tests plus the contract tests, nothing else: make test-service SVC=orders (or gateway)
	@case " $(TEST_SERVICES) " in *" $(SVC) "*) [ -n "$(SVC)" ] ;; *) false ;; esac || { \
	  echo "make test-service: SVC must be one of: $(TEST_SERVICES) (got '$(SVC)')" >&2; exit 2; }
	@devstack/bin/bootstrap
	@$(UV) pytest $(PYTEST_FLAGS) $(if $(filter gateway,$(SVC)),gateway/tests,services/$(SVC)/tests) tests/contract

unit: bootstrap
	@for p in catalog inventory orders payments notifications; do \
	  uv run --frozen --package $$p pytest -q services/$$p || exit 1; done
	@uv run --frozen --package gateway pytest -q gateway/tests

contract: bootstrap
	@$(UV) pytest $(PYTEST_FLAGS) tests/contract

e2e: bootstrap
	@$(UV) pytest $(PYTEST_FLAGS) tests/e2e

faults: bootstrap ## every fault scenario (one broker, then the 3x2 cluster); FAULTS_FLAGS="--seed 23 --only crash --no-cluster"
	@$(UV) python tests/faults/run.py --report .cache/faults-report.json $(FAULTS_FLAGS)

bench: bootstrap ## open-loop benchmark (vegeta) + references and peers; writes bench/results/{report.md,results.json,*.png}
	@$(UV) --group bench python bench/run.py $(BENCH_FLAGS)

lint: bootstrap lint-imports lint-docker ## ruff (lint and format), mypy --strict, import boundaries, hadolint
	@$(UV) ruff check --quiet .
	@$(UV) ruff format --check --quiet .
	@$(UV) mypy

lint-imports:
	@$(UV) lint-imports --no-cache

DOCKERFILES := $(wildcard services/*/Dockerfile gateway/Dockerfile)

lint-docker: ## hadolint every image recipe (a warning fails)
	@$(UV) hadolint $(DOCKERFILES)

contract-snapshots:
	@UPDATE_CONTRACT_SNAPSHOTS=1 $(UV) pytest -q tests/contract/test_event_contracts.py

clean:
	rm -rf .cache/stack
