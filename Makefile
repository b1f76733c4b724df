# The two front doors: `make lab` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: install lab test lint fuzz bench clean

# Loads trace fixtures and runs the budget on them, so that the compiled readers and kernels
# are cached before the first notebook needs them. The OTLP/JSON scanner reads only files of
# 32 MiB or more on its own: asked for here, or the first large JSON file would wait for it.
define WARM
import latkit
from latkit.analysis import budget
from latkit.ingest import Source, otlp_json
wb = latkit.open()
wb.load("tests/fixtures/otlp/single.pb", "tests/fixtures/otlp/spans.jsonl")
budget.breakdown(wb)
list(otlp_json.read(Source.of("tests/fixtures/otlp/spans.jsonl"), fast=True))
endef
export WARM

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@echo "Compiling latkit's decoders once; numba caches them (a minute or two, first time only)"
	$(BIN)/python -c "$$WARM"
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
