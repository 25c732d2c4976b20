# Two commands a user needs: `make demo` (set up + run the sample corpus through Dagster)
# and `make test` (install everything + run the whole test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test dev bench clean

$(BIN)/ocr-assets: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,cluster,dev]'
	touch $@

setup: $(BIN)/ocr-assets

demo: setup
	$(BIN)/ocr-assets demo

test: setup
	$(BIN)/python -m pytest -q

dev: setup
	DAGSTER_HOME=$(CURDIR)/dagster_home $(BIN)/dagster dev -w workspace.yaml --host 127.0.0.1

bench: setup
	$(BIN)/python bench/plan_scale.py --pages 1000000

clean:
	rm -rf data/output data/state dagster_home/storage dagster_home/history dagster_home/schedules dagster_home/logs
