# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint demo serve bench bench-all clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

demo: $(STAMP)
	$(BIN)/cml-monitor demo

bench: $(STAMP)
	$(BIN)/python -m bench.sim_speed
	$(BIN)/python -m bench.cycle --workers 10000

bench-all: $(STAMP)
	for n in 1000 10000 50000; do $(BIN)/python -m bench.cycle --workers $$n; done
	$(BIN)/python -m bench.cycle --workers 10000 --database postgresql --job-store database --seed-budget 0

serve: $(STAMP)
	$(BIN)/cml-monitor serve

clean:
	rm -rf $(VENV) data .pytest_cache
