# The two commands a newcomer needs: `make demo` and `make test`.
# Both set everything up first (a virtualenv in .venv, pinned by requirements.lock).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/backdrop demo

test: $(STAMP)
	$(MAKE) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The codebase's shape: ruff (style, imports, annotations, bugbear, security, blind excepts, async pitfalls)
# and mypy --strict with the pydantic plugin (its files and settings are in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf /tmp/backdrop-lock && $(PYTHON) -m venv /tmp/backdrop-lock
	/tmp/backdrop-lock/bin/pip install --quiet -e '.[test]'
	/tmp/backdrop-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info
