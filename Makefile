# conversion-relay — the two commands a merchant's engineer needs are `make local` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.13; build and test with the same minor version (pyenv's if present).
PYTHON_VERSION ?= 3.13
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PYTHON ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION)) \
                      $(shell command -v python$(PYTHON_VERSION) 2>/dev/null) python3)
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
# sam build needs the runtime's exact interpreter on PATH.
SAM_PATH := $(dir $(PYTHON)):$(PATH)
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: help install lint format test test-fast local validate security build events bench chaos clean

help:
	@echo "make local     run the whole relay on 127.0.0.1 (moto + fake destinations), Ctrl-C to stop"
	@echo "make test      install, lint, and run the whole test suite"
	@echo "make validate  sam validate --lint, cfn-lint on the template and on its SAM-transformed form"
	@echo "make build     sam build (offline, arm64) and compile hash-based .pyc into the artifacts"
	@echo "make events    regenerate the signed sample events in events/"
	@echo "make bench     cold start, ingest CPU, consumer throughput, hashing, cost -> bench/results/"
	@echo "make security  checkov on the template and its SAM-transformed form (no failed check allowed)"
	@echo "make chaos     thousands of webhooks through the local stack under injected faults (CHAOS_WEBHOOKS)"

$(BIN)/.installed: requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e . --no-deps
	touch $@

install: $(BIN)/.installed

$(SAM_VENV)/.installed: requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q -r requirements-sam.txt
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -x --ignore=tests/integration

local: install
	$(BIN)/python -m relay_local

validate: install $(SAM_VENV)/.installed
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml
	mkdir -p build
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/python tools/sam2cfn.py template.yaml build/cfn.json
	$(BIN)/cfn-lint build/cfn.json

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.txt
	touch $@

# Suppressions live in the template, in each resource's Metadata (checkov: skip: id + comment), and carry
# over to the transformed form. --skip-download: offline, no Prisma Cloud look-ups.
security: install $(CHECKOV_VENV)/.installed
	mkdir -p build
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/python tools/sam2cfn.py template.yaml build/cfn.json
	$(CHECKOV) -f template.yaml -f build/cfn.json --framework cloudformation --quiet --compact --skip-download

build: $(SAM_VENV)/.installed
	PATH="$(SAM_PATH)" $(SAM) build
	$(PYTHON) -m compileall -q --invalidation-mode unchecked-hash .aws-sam/build

# Benchmarks print ratios against baselines measured in the same run; `make test` never runs them.
# The artifact measured is assembled under build/bench (pip install --target, as sam build lays it out).
bench: install
	PYTHONPATH=layers/shared:. BENCH_PYTHON=$(PYTHON) $(BIN)/python -m bench.run

# Loopback only, bounded: CHAOS_WEBHOOKS posts (default 2000), CHAOS_MAX_SECONDS (default 900).
chaos: install
	$(BIN)/python tools/chaos.py

events: install
	$(BIN)/python tools/make_events.py

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam build .pytest_cache .ruff_cache .hypothesis
