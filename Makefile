# The two set-up commands of the README: `make demo` and `make test`. Both create the
# virtual environment they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Open edX's LTI consumer for the end-to-end tests in tests/openedx: its dependencies clash
# with gradesync's, so it has a virtual environment of its own.
OPENEDX_VENV ?= .venv-openedx

.PHONY: demo test check lint typecheck imports bench clean openedx-venv

$(BIN)/gradesync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

$(OPENEDX_VENV)/.installed: tests/openedx/requirements.txt
	$(PYTHON) -m venv $(OPENEDX_VENV)
	$(OPENEDX_VENV)/bin/pip install -q --upgrade pip
	$(OPENEDX_VENV)/bin/pip install -q -r tests/openedx/requirements.txt
	@touch $@

openedx-venv: $(OPENEDX_VENV)/.installed

demo: $(BIN)/gradesync
	$(BIN)/gradesync serve --demo

# PostgreSQL cases run when a server can be had: GRADESYNC_TEST_POSTGRES_URL, or a local
# installation that .ci/postgres.sh can start (it never installs one outside CI). The Open edX
# cases run on the virtual environment `openedx-venv` makes.
# pytest-xdist runs the files on one process per core (TEST_WORKERS=0: in this process), each
# with a PostgreSQL database of its own (tests/conftest.py); a file's tests stay on one
# process, so its module fixtures (a PostgreSQL server of its own, Open edX) are made once. A
# process that dies (a hung test past pytest's timeout) ends the run, with the test named.
TEST_WORKERS ?= auto
test: $(BIN)/gradesync $(OPENEDX_VENV)/.installed
	@url="$${GRADESYNC_TEST_POSTGRES_URL:-$$(GRADESYNC_PG_NO_INSTALL=$${GRADESYNC_PG_NO_INSTALL:-1} .ci/postgres.sh 2>/dev/null || true)}"; \
	GRADESYNC_TEST_POSTGRES_URL="$$url" $(BIN)/pytest \
	  -n $(TEST_WORKERS) --dist loadfile --max-worker-restart=0 $(PYTEST_ARGS)

# What CI runs before the tests: style, types, and the direction of imports (pyproject.toml).
check: lint typecheck imports

lint: $(BIN)/gradesync
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(BIN)/gradesync
	$(BIN)/mypy

imports: $(BIN)/gradesync
	$(BIN)/lint-imports

bench: $(BIN)/gradesync
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(OPENEDX_VENV) .pytest_cache .mypy_cache .ruff_cache
