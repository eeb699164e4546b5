# Every target builds .venv on first use; nothing else needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format docs screenshots bench system-deps clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/officesensor demo

# Debian packages the suite drives for real (Mosquitto, Chromium); installed when missing and root.
system-deps:
	sh scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Ingest throughput, CPU and latency against two peers; figures in docs/benchmarks.md.
bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest_throughput.py

screenshots: $(STAMP) system-deps
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser -q

docs: $(STAMP)
	$(BIN)/python scripts/update_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
