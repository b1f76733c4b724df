# The two front doors: `make lab` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: install lab test lint fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

lab: install
	$(BIN)/jupyter lab notebooks/

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -m "not long" tests $(if $(NOTEBOOKS),--nbval-lax $(NOTEBOOKS))

fuzz: install
	$(BIN)/pytest -q -m long tests/test_fuzz.py

bench: install
	$(BIN)/python benchmarks/ingest_otlp.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

-include sample_data/demo/sample-data.mk
