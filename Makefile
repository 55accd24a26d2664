# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench install install-test install-bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

# The browser tests drive Debian's chromium (Playwright's own browser download is not used).
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench

## The main job: the demo on the embedded SQLite default.
demo: install
	$(BIN)/dotmac-bl demo

## Install what the tests need, then every gate: lint, format, types, tests on both databases.
test: install-test lint typecheck pytest

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck:
	$(BIN)/mypy --strict src

# Two workers: most tests wait on a database, a subprocess or a server, so a second process
# overlaps those waits even on two cores. The reliability tests (processes racing or being
# killed, leases timed on the wall clock) run afterwards on their own, with no other test
# taking the cores their processes need. Both phases run; either failing fails the target.
pytest:
	$(BIN)/pytest -n 2 --dist loadgroup -m "not reliability"; parallel=$$?; \
	$(BIN)/pytest -m reliability && exit $$parallel

bench: install-bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dotmac_business_logic.db*
