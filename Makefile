# Two commands set everything up on a fresh machine: `make serve` and `make test`.
# The venv gets the dev and muaalem extras (torch 2.13.0 CPU) so every test runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test bench lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,muaalem]'
	touch $(STAMP)

## serve: set up and start the server on http://127.0.0.1:8000 (HOST=0.0.0.0 PORT=... to change)
HOST ?= 127.0.0.1
PORT ?= 8000
serve: $(STAMP)
	$(BIN)/iqrah info
	$(BIN)/iqrah serve --host $(HOST) --port $(PORT)

## test: set up and run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest

## bench: print the speed benchmarks
bench: $(STAMP)
	$(BIN)/python bench/align_speed.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info
