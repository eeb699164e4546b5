# Every target builds .venv on first use; nothing else needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format docs screenshots bench bench-ingest bench-dashboard system-deps clean

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

# Both benchmarks; figures in docs/benchmarks.md.
bench: bench-ingest bench-dashboard

# Ingest throughput, CPU and latency against two peers.
bench-ingest: $(STAMP) system-deps
	$(BIN)/python bench/ingest_throughput.py

# The dashboard's read side over a year of readings against InfluxDB 1.6 (Debian's package).
# The first run builds the year of data (10-15 minutes) and caches it.
bench-dashboard: $(STAMP) system-deps
	sh scripts/bench-deps.sh
	$(BIN)/python bench/dashboard.py

screenshots: $(STAMP) system-deps
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser -q

docs: $(STAMP)
	$(BIN)/python scripts/update_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
