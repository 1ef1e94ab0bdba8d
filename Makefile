# Set-up is part of every target: on a fresh machine `make demo` and `make test` are all you need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCALE ?= 1.0

.PHONY: demo test soak lint bench clean browser jdbc odbc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed  ## the shop example: data, four weeks of run history, a run, its service levels
	$(BIN)/python examples/shop/generate.py --scale $(SCALE)
	$(BIN)/python examples/shop/history.py
	$(BIN)/kiban --project examples/shop run
	@echo
	@echo "The next morning: returns booked at the tills, and merchandising's product export has a new column:"
	$(BIN)/python examples/shop/generate.py --next-morning
	$(BIN)/kiban --project examples/shop collect
	$(BIN)/kiban --project examples/shop quarantine list
	$(BIN)/kiban --project examples/shop run
	$(BIN)/kiban --project examples/shop slo history morning_sales
	$(BIN)/kiban --project examples/shop incidents
	$(BIN)/kiban --project examples/shop report
	$(BIN)/kiban --project examples/shop deliver weekly_marketing
	@echo
	@echo "Value from data: the replenishment pilot (initiatives/replenishment.yml) measured, next to the truth the generator planted:"
	@$(BIN)/python examples/shop/generate.py --truth
	$(BIN)/kiban --project examples/shop initiatives measure replenishment --svg examples/shop/replenishment.svg
	@echo
	@echo "The team: who is on call, and the postmortem kiban drafted from one of the demo's incidents:"
	$(BIN)/kiban --project examples/shop oncall --days 7
	$(BIN)/kiban --project examples/shop postmortem 4
	@echo
	@echo "Data-quality checks on the lake (the generator's bad POS lines fail on purpose):"
	@$(BIN)/kiban --project examples/shop check layer:lake || echo "(kiban check exited $$?: one blocking check failed, as the example intends)"
	@echo
	@echo "Next: look around with"
	@echo "  $(BIN)/kiban --project examples/shop incidents show 4     # one incident's timeline"
	@echo "  $(BIN)/kiban --project examples/shop slo deadlines       # how late each asset may finish"
	@echo "  $(BIN)/kiban --project examples/shop impact warehouse.order_lines"
	@echo "  $(BIN)/kiban --project examples/shop report -f html -o examples/shop/report.html"
	@echo "  $(BIN)/kiban --project examples/shop check                # every check, on what is published"
	@echo "  $(BIN)/kiban --project examples/shop show warehouse.customers"
	@echo "  $(BIN)/kiban --project examples/shop show lake.master_products   # its loads and the schema drift"
	@echo "  $(BIN)/kiban --project examples/shop value                # the value ledger: initiatives per use case"
	@echo "  $(BIN)/kiban --project examples/shop review --week this   # the weekly operations review"
	@echo "  $(BIN)/kiban --project examples/shop quarantine show lake.web_access"
	@echo "  $(BIN)/kiban --project examples/shop graph               # what feeds what"
	@echo "  $(BIN)/kiban --project examples/shop runs"

browser:  ## Debian's chromium and a CJK font (fonts-noto-cjk) for the web console's browser tests and Japanese screenshots (installed when running as root)
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi 'Noto Sans CJK'; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; \
	  else \
	    echo "chromium or a CJK font is missing: install them (e.g. sudo apt-get install chromium fonts-noto-cjk) or the browser tests are skipped and Japanese shows as boxes"; \
	  fi; }

jdbc:  ## Debian's PostgreSQL JDBC driver for the BI endpoint's JDBC test (installed when running as root)
	@test -f /usr/share/java/postgresql.jar || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpostgresql-jdbc-java; \
	  else \
	    echo "the PostgreSQL JDBC driver is missing: install libpostgresql-jdbc-java or the JDBC test is skipped"; \
	  fi; }

odbc:  ## Debian's psqlODBC driver (Excel's way in) for the BI endpoint's ODBC test (installed when running as root)
	@odbcinst -q -d -n "PostgreSQL Unicode" >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unixodbc odbc-postgresql; \
	  else \
	    echo "the PostgreSQL ODBC driver is missing: install unixodbc and odbc-postgresql or the ODBC test is skipped"; \
	  fi; }

TEST_WORKERS ?= 2

test: $(VENV)/.installed browser jdbc odbc  ## run the whole test suite (TEST_WORKERS processes, each taking whole files)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

soak: $(VENV)/.installed browser jdbc odbc  ## the full adversarial soaks (slow: about 1.5 hours), not part of `make test`
	$(BIN)/python -m pytest -q -m soak

lint: $(VENV)/.installed  ## ruff, mypy and the import contracts (.importlinter) on the package
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(VENV)/.installed  ## kiban against dbt, SQLMesh and raw DuckDB (see bench/README.md)
	bash bench/setup_peers.sh
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) examples/shop/lake examples/shop/kiban.duckdb* examples/shop/.kiban examples/shop/report.html examples/shop/sources_data
