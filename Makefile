# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean config-reference

$(STAMP): pyproject.toml scripts/ensure-postgres.sh scripts/ensure-chromium.sh
	sh scripts/ensure-postgres.sh
	sh scripts/ensure-chromium.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/funnelsync demo

test: $(STAMP)
	$(BIN)/ruff check funnelsync tests bench
	$(BIN)/mypy
	$(BIN)/pytest

# docs/config-reference.md from the config's pydantic schema (tests/test_config_reference.py checks it)
config-reference: $(STAMP)
	$(BIN)/python -m funnelsync.cli.config_reference > docs/config-reference.md

clean:
	rm -rf $(VENV) demo *.egg-info funnelsync-state.db*
