# Tendril developer entry points. The logic lives in scripts/.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV := .venv
BIN := $(VENV)/bin
# What is installed in the venv: the runtime (make run), or the runtime and the dev extras (make test).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# Tests run in two processes (pytest-xdist), each with its own PostgreSQL cluster and fakes: most
# tests wait on sockets and subprocesses, so two share the two cores well.
TEST_WORKERS ?= 2

.PHONY: help run test venv

help: ## list these targets (the default)
	@echo "Tendril: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-6s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Settings come from TENDRIL_* variables or .env, e.g. TENDRIL_PORT=18080 make run (see README.md)."

run: $(RUN_STAMP) ## serve Tendril on 127.0.0.1:8080 (TENDRIL_PORT to change), data in ./.tendril
	exec $(BIN)/tendril serve

test: $(DEV_STAMP) ## the whole suite as CI runs it: lint, type checks, tests on SQLite and PostgreSQL (long)
	scripts/ensure-postgres
	scripts/ensure-node-tools
	scripts/ensure-ts-client
	scripts/ensure-browser
	scripts/ensure-curl
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal || { rc=$$?; [[ $$rc -ne 5 ]] || echo "make test: pytest collected no tests" >&2; exit $$rc; }

venv: $(DEV_STAMP) ## create .venv with Tendril and the development tools (pytest, ruff, pyright)

# Reinstall only when pyproject.toml is newer than the stamp (or the venv is missing). The dev
# install touches both stamps; a runtime-only install leaves the dev stamp stale.
$(RUN_STAMP): pyproject.toml
	scripts/ensure-venv run

$(DEV_STAMP): pyproject.toml
	scripts/ensure-venv dev
