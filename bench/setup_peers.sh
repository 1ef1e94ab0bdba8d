#!/usr/bin/env bash
# Create the peer-tool virtualenvs used by bench/run.py, outside kiban's own venv:
#   ${KIBAN_BENCH_ROOT:-/tmp/kiban-bench}/venvs/{dbt,sqlmesh}
# Versions default to the ones the published peer figures were measured with;
# PEERS_UNPINNED=1 takes the newest release inside the same minor series instead.
#
#   bash bench/setup_peers.sh            # idempotent: an existing, working venv is kept
#   PEERS_FORCE=1 bash bench/setup_peers.sh   # rebuild the venvs
#
# Notes:
#  * dbt-core 1.12 cannot be installed offline (a build step fetches a wheel), hence <1.12.
#  * sqlmesh 0.236 requires duckdb<2, so its venv carries DuckDB 1.x.
set -euo pipefail

ROOT=${KIBAN_BENCH_ROOT:-/tmp/kiban-bench}
VENVS="$ROOT/venvs"
PY=${PYTHON:-python3}
mkdir -p "$VENVS"

if [[ "${PEERS_UNPINNED:-0}" == 1 ]]; then
  DBT_PKGS="dbt-core>=1.11,<1.12 dbt-duckdb>=1.11,<1.12"
  SQLMESH_PKGS="sqlmesh[duckdb]>=0.236,<0.237"
else
  DBT_PKGS="dbt-core==1.11.16 dbt-duckdb==1.11.1 dbt-adapters==1.24.5 duckdb==2.0.1"
  SQLMESH_PKGS="sqlmesh[duckdb]==0.236.4 sqlglot==30.8.0 duckdb==1.5.6"
fi

ensure_time() {
  if /usr/bin/time -f '%M' true 2>/dev/null; then return 0; fi
  echo "== installing GNU time (needed for peak RSS / CPU)"
  if [[ $(id -u) == 0 ]]; then
    apt-get install -y time || { apt-get update && apt-get install -y time; }
  else
    sudo apt-get install -y time || { sudo apt-get update && sudo apt-get install -y time; }
  fi
}

venv_ok() {  # name, probe-command
  [[ -x "$VENVS/$1/bin/python" ]] && "$VENVS/$1/bin/$2" --help > /dev/null 2>&1
}

make_venv() {  # name, probe-command, packages...
  local name=$1 probe=$2
  shift 2
  if [[ "${PEERS_FORCE:-0}" != 1 ]] && venv_ok "$name" "$probe"; then
    echo "== $name: already installed ($VENVS/$name)"
    return 0
  fi
  rm -rf "${VENVS:?}/$name"
  local t0=$SECONDS
  echo "== $name: installing $*"
  "$PY" -m venv "$VENVS/$name"
  # shellcheck disable=SC2068
  if ! "$VENVS/$name/bin/pip" install -q --disable-pip-version-check $@ > "$VENVS/install-$name.log" 2>&1; then
    echo "!! $name install failed, see $VENVS/install-$name.log"
    return 1
  fi
  "$VENVS/$name/bin/pip" freeze > "$VENVS/freeze-$name.txt"
  echo "== $name: done in $((SECONDS - t0)) s"
}

ensure_time
status=0
# shellcheck disable=SC2086
make_venv dbt dbt $DBT_PKGS || status=1
# shellcheck disable=SC2086
make_venv sqlmesh sqlmesh $SQLMESH_PKGS || status=1
echo "venvs in $VENVS (status $status)"
exit $status
