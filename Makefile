# `make demo` and `make test` set up .venv from pyproject.toml when it is missing
# or older than pyproject.toml, then run.
PYTHON_FOR_VENV ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) build_dataset.py --dataset digits --overwrite
	$(PYTHON) train.py --checkpoints output/checkpoints --overwrite
	$(PYTHON) rank_accuracy.py --report output/report.json

test: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

clean:
	rm -rf output .pytest_cache .ruff_cache
