# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: setup test test-fast lint imports demo serve bench bench-all clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Everything: the package, the simulator and the test tools.
$(STAMP): pyproject.toml $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

# Only what the demo runs: the package and the simulator (no test tools, no browser driver).
$(DEMO_STAMP): pyproject.toml $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[sim]'
	touch $(DEMO_STAMP)

setup: $(STAMP)

imports:
	$(PYTHON) tools/check_imports.py src

test: $(STAMP) imports
	$(BIN)/ruff check src tests bench tools
	$(BIN)/pytest -q

# The pure tests (domain, rules, observers, the monitor with fakes): under a minute, and no
# PostgreSQL, Redis, moto or browser needed. `make test` runs them too.
test-fast: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP) imports
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

demo: $(DEMO_STAMP)
	$(BIN)/cml-monitor demo

bench: $(STAMP)
	$(BIN)/python -m bench.sim_speed
	$(BIN)/python -m bench.cycle --workers 10000

bench-all: $(STAMP)
	for n in 1000 10000 50000; do $(BIN)/python -m bench.cycle --workers $$n; done
	$(BIN)/python -m bench.cycle --workers 10000 --database postgresql --job-store database --seed-budget 0
	$(BIN)/python -m bench.history

serve: $(STAMP)
	$(BIN)/cml-monitor serve

clean:
	rm -rf $(VENV) data .pytest_cache
