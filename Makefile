# Two commands: `make demo` (train, serve and query a model on the built-in corpus) and
# `make test` (the test suite). Both create .venv and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline: the built-in corpus and local files need no Hugging Face Hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
DEMO_ARGS ?=

.PHONY: install demo test lint format clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes. torch is pinned and installed first: an
# unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(OFFLINE) $(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(OFFLINE) $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs/demo
