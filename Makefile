# The two commands the README promises: `make run` and `make test`. Both install what they
# need into .venv from this project's own files first.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: run test lint migrate
run: $(VENV)/.installed
	$(PY) -m bot run

migrate: $(VENV)/.installed
	$(PY) -m bot migrate

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check bot core storage

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest
