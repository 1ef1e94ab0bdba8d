# Set-up is part of every target: on a fresh machine `make demo` and `make test` are all you need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCALE ?= 1.0

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed  ## generate the shop example's data and run it end to end
	$(BIN)/python examples/shop/generate.py --scale $(SCALE)
	$(BIN)/kiban --project examples/shop run
	$(BIN)/kiban --project examples/shop status
	@echo
	@echo "Next: look around with"
	@echo "  $(BIN)/kiban --project examples/shop graph          # what feeds what"
	@echo "  $(BIN)/kiban --project examples/shop show daily_sales"
	@echo "  $(BIN)/kiban --project examples/shop runs"
	@echo "  duckdb examples/shop/kiban.duckdb 'from mart.daily_sales limit 10'"

test: $(VENV)/.installed  ## run the whole test suite
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed  ## ruff and mypy on the package
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy

bench: $(VENV)/.installed  ## kiban against dbt, SQLMesh and raw DuckDB (see bench/README.md)
	bash bench/setup_peers.sh
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) examples/shop/lake examples/shop/kiban.duckdb* examples/shop/.kiban
