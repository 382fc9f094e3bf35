# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv and install from pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: install test lint demo bench simulator
install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q -n 4 --dist worksteal  # mostly waiting on real processes and sockets: 4 workers fit 2 cores

demo: $(VENV)/.installed
	$(PY) bot.py demo

bench: $(VENV)/.installed
	$(PY) -m bench.ack_latency
	$(PY) -m bench.callbacks

simulator: $(VENV)/.installed
	$(PY) -m sw_api.simulator
