#!/usr/bin/env bash
# The dlt venv that bench/ingest_pg.py compares kiban's PostgreSQL connector with — outside kiban's own venv
# (dlt is never a dependency of kiban):  ${KIBAN_BENCH_ROOT:-/tmp/kiban-bench}/venv-dlt
# Versions are the ones of the reference measurement (/work/shared/bench/ingest: dlt 1.31.0, connectorx 0.4.6).
#
#   bash bench/setup_ingest_pg.sh        # idempotent: a working venv is kept
set -euo pipefail
ROOT=${KIBAN_BENCH_ROOT:-/tmp/kiban-bench}
VENV="$ROOT/venv-dlt"
PY=${PYTHON:-python3}
mkdir -p "$ROOT"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import dlt, connectorx, sqlalchemy, psycopg" 2>/dev/null; then
  echo "== $VENV is ready"; exit 0
fi
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "dlt[parquet,filesystem]==1.31.0" "connectorx==0.4.6" "psycopg2-binary==2.9.13" \
  "SQLAlchemy==2.1.9" "psycopg[binary]" "pyarrow"
"$VENV/bin/python" -c "import dlt, connectorx; print('== dlt', dlt.__version__, 'connectorx', connectorx.__version__)"
