# Every target sets itself up from a fresh clone: a pinned uv builds .venv from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SCALE ?= 10000
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: setup demo test ui bench lint clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced-test: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra test --python $(PYTHON)
	rm -f $(VENV)/.synced-*
	touch $@

$(VENV)/.synced-bench: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra test --extra bench --python $(PYTHON)
	rm -f $(VENV)/.synced-*
	touch $@

setup: $(VENV)/.synced-test

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/segmentation-platform demo

test: setup
	$(VENV)/bin/ruff check segmentation_platform tests benchmarks
	$(VENV)/bin/pytest -n 2

ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev --host 127.0.0.1 --port 3000 -w workspace.yaml

bench: $(VENV)/.synced-bench
	$(VENV)/bin/python -m benchmarks.run --scale $(SCALE)

lint: setup
	$(VENV)/bin/ruff check segmentation_platform tests benchmarks
	$(VENV)/bin/ruff format --check segmentation_platform tests benchmarks

clean:
	rm -rf data/landing data/ground_truth data/warehouse.duckdb* data/exports data/reports $(DAGSTER_HOME)
