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

# uv from PyPI through a venv's pip. Debian/Ubuntu without python3-venv cannot make that venv:
# then a working uv on PATH, else pip's --target install (allowed where PEP 668 forbids --user).
$(UV):
	@echo "bootstrapping uv into $(TOOLS)/ ..."
	@if python3 -m venv $(TOOLS) >/dev/null 2>&1 && [ -x $(TOOLS)/bin/pip ]; then \
		$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv; \
	elif command -v uv >/dev/null 2>&1 && uv --version >/dev/null 2>&1; then \
		echo "python3 -m venv failed (no python3-venv?): using $$(command -v uv)"; \
		mkdir -p $(TOOLS)/bin && ln -sf "$$(command -v uv)" $(UV); \
	elif python3 -m pip --version >/dev/null 2>&1; then \
		echo "python3 -m venv failed (no python3-venv?): installing uv with pip --target $(TOOLS)/pip"; \
		python3 -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/pip uv \
			&& mkdir -p $(TOOLS)/bin && ln -sf ../pip/bin/uv $(UV); \
	else \
		echo "error: cannot bootstrap uv: python3 has neither venv nor pip;" \
			"install python3-venv (apt-get install python3-venv) or uv (https://docs.astral.sh/uv/)" >&2; \
		exit 1; \
	fi

$(SYNCED): $(UV) uv.lock pyproject.toml .python-version
	@$(UV) sync --frozen --all-extras --group dev
	@touch $@

demo: $(SYNCED)
	@$(RUN) devtools demo

test: $(SYNCED)
	@$(RUN) pytest $(PYTEST_ARGS)

# ruff, then the import contracts of .importlinter (layers, independent agents, no cycles):
# a broken contract names the offending import and fails the target.
lint: $(SYNCED)
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) lint-imports --no-cache

fmt: $(SYNCED)
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

bench: $(SYNCED)
	@$(RUN) python -m support.bench

clean:
	rm -rf $(TOOLS) .venv .pytest_cache .ruff_cache
