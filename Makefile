# Tendril developer entry points. The logic lives in scripts/.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv

run: $(STAMP)
	exec $(BIN)/tendril serve

test: $(STAMP)
	scripts/ensure-postgres
	scripts/ensure-node-tools
	scripts/ensure-ts-client
	scripts/ensure-browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright
	$(BIN)/pytest || { rc=$$?; [[ $$rc -ne 5 ]] || echo "make test: pytest collected no tests" >&2; exit $$rc; }

venv: $(STAMP)

# Reinstall only when pyproject.toml is newer than the stamp (or the venv is missing).
$(STAMP): pyproject.toml
	scripts/ensure-venv
