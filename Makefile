# Two commands on a fresh machine: `make demo` and `make test`.
# Both bootstrap uv (from PyPI, into .tools/) and the project's environment
# (Python from .python-version, `uv sync --frozen`); a second run reuses them.
SHELL := /bin/bash
TOOLS := .tools
UV := $(TOOLS)/bin/uv
SYNCED := .venv/.devtools-synced
RUN := $(UV) run --frozen --no-sync
export LITELLM_LOCAL_MODEL_COST_MAP := True
export UV_NO_PROGRESS := 1

.PHONY: demo test lint fmt bench setup clean

setup: $(SYNCED)

$(UV):
	@echo "bootstrapping uv into $(TOOLS)/ ..."
	@python3 -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(SYNCED): $(UV) uv.lock pyproject.toml .python-version
	@$(UV) sync --frozen --all-extras --group dev
	@touch $@

demo: $(SYNCED)
	@$(RUN) devtools demo

test: $(SYNCED)
	@$(RUN) pytest $(PYTEST_ARGS)

lint: $(SYNCED)
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .

fmt: $(SYNCED)
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

bench: $(SYNCED)
	@$(RUN) python -m support.bench

clean:
	rm -rf $(TOOLS) .venv .pytest_cache .ruff_cache
