# The commands of the project. `make demo` and `make test` need nothing run before them.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STACK := $(BIN)/python deploy/local/stack.py

.PHONY: help venv up down status demo test test-unit lint contracts clean bench bench-quick reliability

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed  ## create .venv and install the project with its dev tools

up: venv  ## install what is missing; start Kafka, Postgres, Redis and the four services
	$(STACK) up

down:  ## stop what `make up` started
	@if [ -x $(BIN)/python ]; then $(STACK) down; else python3 deploy/local/stack.py down; fi

status: venv  ## what is up, and where
	$(STACK) status

demo: up  ## the whole stack, then the URL of a customer's Marketing tab
	$(BIN)/python -m ops.demo

test: up  ## unit, integration and end-to-end tests on the real stack (starts it if needed)
	$(STACK) install-browser
	set -a; . .local/stack.env; set +a; $(BIN)/pytest -q -p no:cacheprovider

reliability: up  ## the full-sized fault-tolerance suite (50,000 events, 20+ kills per service, ...)
	set -a; . .local/stack.env; set +a; RELIABILITY_SCALE=full $(BIN)/pytest -q -p no:cacheprovider tests/reliability

bench: up  ## the benchmarks: bench/results/latest.json and docs/benchmarks.md
	set -a; . .local/stack.env; set +a; $(BIN)/python -m bench.run

bench-quick: up  ## a quick smoke run of the benchmarks (small sizes)
	set -a; . .local/stack.env; set +a; $(BIN)/python -m bench.run --quick

test-unit: venv  ## the fast tests only (no servers)
	$(BIN)/pytest -q tests/unit

lint: venv  ## ruff
	$(BIN)/ruff check .

contracts: venv  ## JSON Schemas of every event (docs/contracts/) and each service's AsyncAPI document
	$(BIN)/python -m shared.contracts.schemas docs/contracts
	@mkdir -p docs/asyncapi
	@for s in giftcard_ledger redemption_ledger segment_engine marketing_view; do \
	  $(BIN)/python -m services.$$s asyncapi > docs/asyncapi/$$s.json && echo "docs/asyncapi/$$s.json"; done

clean: down  ## stop everything and delete run-time data (.local/)
	rm -rf .local
