# Every target bootstraps .venv from the hashed lock, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trending-papers demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bot feeds storage tests bench
	$(BIN)/ruff format --check bot feeds storage tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest.py 50000
	$(BIN)/python bench/trend.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/rank.py
	$(BIN)/python bench/fanout.py 10000
	$(BIN)/python bench/telegram_commands.py 1000
	$(BIN)/python bench/slack_commands.py 1000

# Regenerate the lock after changing dependencies in pyproject.toml (needs the package index).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links --extra dev -o requirements.lock pyproject.toml requirements-build.in

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
