# abx: the two quickstart commands are `make demo` and `make test`. Each one sets itself up:
# a .venv with the pinned dependency set (constraints.txt), and the services it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export OMP_NUM_THREADS ?= 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test lint typecheck services bench clean image scale-demo

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || PYTHON=python3; \
	  test -x $(BIN)/python || $${PYTHON:-python3} -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)

services:
	@bash scripts/services.sh

demo: install
	bash scripts/demo.sh

test: install services
	$(BIN)/ruff check pipeline_components dags tests benchmarks
	$(BIN)/mypy pipeline_components
	$(BIN)/python -m pytest -q --timeout=900 --durations=15

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy pipeline_components

# The endpoint image abx-endpoint:<git sha> (+ :latest) for serving.backend: docker.
image: install services
	$(BIN)/abx image build

# The scale-out stack (Celery on Redis, PostgreSQL everywhere, replicas as containers) on this
# machine: one experiment triggered through the Airflow REST API, then teardown. docs/scale-out.md
scale-demo: install
	bash scripts/scale-demo.sh

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf .abx data/raw data/validation data/features reports
