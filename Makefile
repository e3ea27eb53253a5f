# The two fresh-machine commands of the README:
#   make demo   installs Orchestra and runs the flagship workflow embedded (no broker, no API key)
#   make test   installs everything the tests need, starts the services, runs the whole suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test install install-dev services vllm lint typecheck bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps: a second `make demo` / `make test` does not reinstall unless pyproject.toml changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/orchestra run graphs/support_triage.py --fail stripe_refund --budget 0.05; \
	status=$$?; \
	echo ""; \
	echo "orchestra is installed in $(VENV): run it as $(BIN)/orchestra, or put it on PATH with"; \
	echo "  source $(BIN)/activate && orchestra --help"; \
	exit $$status

services:
	bash scripts/ensure-services.sh
	bash scripts/ensure-system-packages.sh

vllm:
	bash scripts/setup-vllm.sh

test: install-dev services vllm
	$(BIN)/ruff check orchestra tests
	$(BIN)/mypy orchestra
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check orchestra tests && $(BIN)/ruff format --check orchestra tests

typecheck: install-dev
	$(BIN)/mypy orchestra

clean:
	rm -rf $(VENV) .orchestra .pytest_cache .mypy_cache .ruff_cache
