"""Benchmark workload: one synthetic `orders` source plus N layered SQL models.

The workload is the same as the published peer benchmark (same seed, same random
draws, same SQL text, same deterministic source data), so figures are comparable.
It is rendered for several tools; only how a model names another model (and the
source) differs:

    kiban     warehouse.int_003 / mart.mart_000, source `lake.orders`
    dbt       {{ ref('int_003') }}            (dbt-duckdb, materialized table, threads 1)
    sqlmesh   bench.int_003                   (kind FULL, audits attached)
    baseline  int_003                         (plain DuckDB, one process, statements in DAG order)

Layers for N models: ceil(0.2 N) staging (read the source), ceil(0.1 N) marts,
the rest intermediate. Intermediate models are one of
    enrich   1 order-grain upstream, CASE + filter             -> order grain
    join     2-3 order-grain upstreams joined on order_id      -> order grain
    agg      1 order-grain upstream, GROUP BY customer/day     -> customer-day grain
    combine  1-3 customer-day upstreams, UNION ALL + GROUP BY  -> customer-day grain
Marts read 1-3 customer-day models (preferring unconsumed ones) and aggregate per day.
Checks (peers only, kiban checks come later): not_null + unique on stg_000.order_id,
accepted_values on stg_000.status, row count > 0 on every mart.

    python bench/workload.py --models 100 --rows 10000 --out /tmp/kiban-bench/proj/N100_R10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

SEED = 42
STATUSES = ("placed", "shipped", "delivered", "returned", "cancelled")
REF = re.compile(r"\{ref:([a-z0-9_]+)\}")
SOURCE = "{source}"
ORDER, CUSTOMER_DAY, MART = "O", "A", "M"
TOOLS = ("kiban", "dbt", "sqlmesh", "baseline")


@dataclass
class Model:
    name: str
    layer: str  # staging | intermediate | mart
    grain: str
    deps: list[str]
    sql: str  # `{ref:NAME}` placeholders, `{source}` for the orders source


@dataclass
class Check:
    name: str
    type: str  # not_null | unique | accepted_values | row_count_gt0
    model: str
    column: str | None = None
    values: list[str] = field(default_factory=list)


@dataclass
class Spec:
    n_models: int
    seed: int
    models: list[Model]
    checks: list[Check]

    def layer_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.models:
            counts[m.layer] = counts.get(m.layer, 0) + 1
        return counts

    def marts(self) -> list[str]:
        return [m.name for m in self.models if m.layer == "mart"]


# --------------------------------------------------------------------------- source data
ORDERS_SQL = """
COPY (
  SELECT
    i::BIGINT                                                  AS order_id,
    ((i * 7919) % {customers} + 1)::INTEGER                    AS customer_id,
    ((i * 104729) % 1000 + 1)::INTEGER                         AS product_id,
    round(((i * 2654435761) % 100000) / 100.0 + 1, 2)::DOUBLE  AS amount,
    CASE
      WHEN (i * 31) % 100 < 50 THEN 'delivered'
      WHEN (i * 31) % 100 < 70 THEN 'shipped'
      WHEN (i * 31) % 100 < 85 THEN 'placed'
      WHEN (i * 31) % 100 < 93 THEN 'returned'
      ELSE 'cancelled'
    END                                                        AS status,
    TIMESTAMP '2024-01-01 00:00:00'
      + to_seconds(((i * 48271) % (90 * 86400))::BIGINT)       AS ordered_at
  FROM range(1, {rows} + 1) t(i)
) TO '{path}' (FORMAT PARQUET)
"""


def _parquet_rows(path: Path) -> int:
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute("select count(*) from read_parquet(?)", [str(path)]).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else -1


def orders_parquet(rows: int, data_dir: Path) -> Path:
    """Deterministic (arithmetic, no RNG) orders file with `rows` rows, cached per row count."""
    import duckdb

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"orders_{rows}.parquet"
    if path.exists() and _parquet_rows(path) == rows:
        return path
    tmp = path.with_suffix(".parquet.tmp")
    con = duckdb.connect()
    try:
        con.execute(ORDERS_SQL.format(customers=max(100, rows // 10), rows=rows, path=tmp))
    finally:
        con.close()
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- model DAG
def layer_sizes(n: int) -> tuple[int, int, int]:
    staging = max(1, -(-n * 2 // 10))
    marts = max(1, -(-n // 10))
    intermediate = n - staging - marts
    if intermediate < 1:
        raise SystemExit("need at least 3 models")
    return staging, intermediate, marts


def _union(ups: list[str]) -> str:
    return "\n  union all\n  ".join(
        f"select customer_id, order_date, n_orders, total_amount from {{ref:{u}}}" for u in ups
    )


def staging_sql(k: int) -> str:
    factor = 1 + (k % 7) / 100
    where = "" if k % 2 == 0 else "\nwhere status <> 'cancelled'"
    return (
        "select\n  order_id,\n  customer_id,\n  product_id,\n"
        f"  amount * {factor} as amount,\n  status,\n  cast(ordered_at as date) as order_date\n"
        f"from {SOURCE}{where}\n"
    )


def agg_sql(up: str) -> str:
    return (
        "select\n  customer_id,\n  order_date,\n  count(*) as n_orders,\n  sum(amount) as total_amount\n"
        f"from {{ref:{up}}}\nwhere status <> 'cancelled'\ngroup by customer_id, order_date\n"
    )


def combine_sql(ups: list[str]) -> str:
    return (
        "select\n  customer_id,\n  order_date,\n  sum(n_orders) as n_orders,\n"
        f"  sum(total_amount) as total_amount\nfrom (\n  {_union(ups)}\n) u\n"
        "group by customer_id, order_date\n"
    )


def join_sql(ups: list[str]) -> str:
    aliases = "abc"[: len(ups)]
    amount = " + ".join(f"{a}.amount" for a in aliases)
    joins = "\n".join(
        f"join {{ref:{u}}} {a} on {a}.order_id = a.order_id" for a, u in zip(aliases[1:], ups[1:], strict=True)
    )
    return (
        "select\n  a.order_id,\n  a.customer_id,\n  a.product_id,\n"
        f"  ({amount}) / {len(ups)} as amount,\n  a.status,\n  a.order_date\n"
        f"from {{ref:{ups[0]}}} a\n{joins}\n"
    )


def enrich_sql(up: str, j: int) -> str:
    return (
        "select\n  order_id,\n  customer_id,\n  product_id,\n"
        "  case when status = 'returned' then -amount else amount end as amount,\n  status,\n  order_date\n"
        f"from {{ref:{up}}}\nwhere order_date >= date '2024-01-01' + {j % 5}\n"
    )


def mart_sql(ups: list[str]) -> str:
    return (
        "select\n  order_date,\n  sum(n_orders) as n_orders,\n  sum(total_amount) as revenue,\n"
        f"  count(distinct customer_id) as n_customers\nfrom (\n  {_union(ups)}\n) u\ngroup by order_date\n"
    )


class _DagBuilder:
    """Grows the model list; the order of random draws is part of the workload definition."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.models: list[Model] = []
        self.uses: dict[str, int] = {}

    def add(self, name: str, layer: str, grain: str, deps: list[str], sql: str) -> None:
        self.models.append(Model(name, layer, grain, deps, sql))
        self.uses[name] = 0
        for d in deps:
            self.uses[d] += 1

    def names(self, grain: str) -> list[str]:
        return [m.name for m in self.models if m.grain == grain]

    def pick(self, grain: str, k: int) -> list[str]:
        pool = self.names(grain)
        return sorted(self.rng.sample(pool, min(k, len(pool))))

    def intermediate_kind(self) -> str:
        draw = self.rng.random()  # always drawn, even when the kind is forced
        if not self.names(CUSTOMER_DAY) or 0.25 <= draw < 0.5:
            return "agg"
        if draw < 0.25:
            return "combine"
        return "join" if draw < 0.75 else "enrich"

    def add_intermediate(self, j: int) -> None:
        name, kind = f"int_{j:03d}", self.intermediate_kind()
        if kind == "agg":
            ups = self.pick(ORDER, 1)
            self.add(name, "intermediate", CUSTOMER_DAY, ups, agg_sql(ups[0]))
            return
        if kind == "combine":
            ups = self.pick(CUSTOMER_DAY, self.rng.randint(1, 3))
            self.add(name, "intermediate", CUSTOMER_DAY, ups, combine_sql(ups))
            return
        if kind == "join":
            ups = self.pick(ORDER, self.rng.randint(2, 3))
            if len(ups) >= 2:
                self.add(name, "intermediate", ORDER, ups, join_sql(ups))
                return
            self.pick(ORDER, 1)  # a too-small pool degrades to enrich; this draw is discarded
        ups = self.pick(ORDER, 1)
        self.add(name, "intermediate", ORDER, ups, enrich_sql(ups[0], j))

    def add_mart(self, k: int) -> None:
        pool = self.names(CUSTOMER_DAY)
        # leaves first (fewest consumers), random tie-break: one draw per candidate, in pool order
        pool.sort(key=lambda x: (self.uses[x], self.rng.random()))
        ups = sorted(pool[: self.rng.randint(1, 3)])
        self.add(f"mart_{k:03d}", "mart", MART, ups, mart_sql(ups))


def make_checks(models: list[Model]) -> list[Check]:
    checks = [
        Check("not_null_stg_000_order_id", "not_null", "stg_000", "order_id"),
        Check("unique_stg_000_order_id", "unique", "stg_000", "order_id"),
        Check("accepted_values_stg_000_status", "accepted_values", "stg_000", "status", list(STATUSES)),
    ]
    checks += [Check(f"row_count_gt0_{m.name}", "row_count_gt0", m.name) for m in models if m.layer == "mart"]
    return checks


def build_spec(n: int, seed: int = SEED) -> Spec:
    n_stg, n_int, n_mart = layer_sizes(n)
    dag = _DagBuilder(seed)
    for k in range(n_stg):
        dag.add(f"stg_{k:03d}", "staging", ORDER, [], staging_sql(k))
    for j in range(n_int):
        dag.add_intermediate(j)
    for k in range(n_mart):
        dag.add_mart(k)
    for m in dag.models:
        assert sorted(set(REF.findall(m.sql))) == sorted(set(m.deps)), m.name
    return Spec(n, seed, dag.models, make_checks(dag.models))


# --------------------------------------------------------------------------- rendering helpers
def render_sql(sql: str, ref: Callable[[str], str], source: str) -> str:
    return REF.sub(lambda mo: ref(mo.group(1)), sql).replace(SOURCE, source)


def read_parquet(path: Path) -> str:
    return f"read_parquet('{path}')"


def check_failures_sql(c: Check, table: str) -> str:
    """Plain SQL returning the number of failing rows (0 means the check passes)."""
    if c.type == "not_null":
        return f"select count(*) from {table} where {c.column} is null"
    if c.type == "unique":
        return (
            f"select count(*) from (select {c.column} from {table} where {c.column} is not null "
            f"group by {c.column} having count(*) > 1) d"
        )
    if c.type == "accepted_values":
        vals = ", ".join(f"'{v}'" for v in c.values)
        return f"select count(*) from {table} where {c.column} not in ({vals})"
    if c.type == "row_count_gt0":
        return f"select case when count(*) > 0 then 0 else 1 end from {table}"
    raise ValueError(c.type)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        dst.symlink_to(src.resolve())


# --------------------------------------------------------------------------- kiban
KIBAN_WAREHOUSE = "kiban.duckdb"  # not warehouse.duckdb: its catalog name would clash with schema `warehouse`
KIBAN_SCHEMA = {"staging": "warehouse", "intermediate": "warehouse", "mart": "mart"}


def render_kiban(spec: Spec, source: Path, out: Path, threads: int | None = 1) -> None:
    """kiban project: lake/orders/*.parquet is `lake.orders`; staging + intermediate in `warehouse`,
    marts in `mart`."""
    d = out / "kiban"
    layer_of = {m.name: KIBAN_SCHEMA[m.layer] for m in spec.models}
    config = f"name: bench\nwarehouse: duckdb:///{KIBAN_WAREHOUSE}\n" + (f"threads: {threads}\n" if threads else "")
    write(d / "kiban.yml", config)
    link_or_copy(source, d / "lake" / "orders" / "orders.parquet")
    for m in spec.models:
        sql = render_sql(m.sql, lambda r: f"{layer_of[r]}.{r}", "lake.orders")
        write(d / "models" / layer_of[m.name] / f"{m.name}.sql", sql)


# --------------------------------------------------------------------------- dbt
DBT_PROJECT = """name: kibanbench
version: '1.0'
config-version: 2
profile: kibanbench
model-paths: ["models"]
macro-paths: ["macros"]
models:
  kibanbench:
    +materialized: table
"""

DBT_ROW_COUNT_TEST = """{% test row_count_gt0(model) %}
select 1 as failure from (select count(*) as n from {{ model }}) t where n = 0
{% endtest %}
"""


def dbt_profile(db: Path) -> str:
    return f"kibanbench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {db}\n      threads: 1\n"


def dbt_schema_yml(checks: list[Check]) -> str:
    per_model: dict[str, tuple[list[str], dict[str, list[str]]]] = {}
    for c in checks:
        model_tests, col_tests = per_model.setdefault(c.model, ([], {}))
        if c.type == "row_count_gt0":
            model_tests.append("row_count_gt0")
        elif c.type == "accepted_values":
            arg = json.dumps({"accepted_values": {"arguments": {"values": c.values}}})
            col_tests.setdefault(str(c.column), []).append(arg)
        else:
            col_tests.setdefault(str(c.column), []).append(c.type)
    lines = ["version: 2", "models:"]
    for model, (model_tests, col_tests) in per_model.items():
        lines.append(f"  - name: {model}")
        if model_tests:
            lines += ["    data_tests:"] + [f"      - {t}" for t in model_tests]
        if col_tests:
            lines.append("    columns:")
            for col, tests in col_tests.items():
                lines += [f"      - name: {col}", "        data_tests:"] + [f"          - {t}" for t in tests]
    return "\n".join(lines) + "\n"


def render_dbt(spec: Spec, source: Path, out: Path, checks: bool = True) -> None:
    d = out / "dbt"
    write(d / "dbt_project.yml", DBT_PROJECT)
    write(d / "profiles.yml", dbt_profile(d / "bench.duckdb"))
    folder = {"staging": "staging", "intermediate": "intermediate", "mart": "marts"}
    for m in spec.models:
        sql = render_sql(m.sql, lambda r: f"{{{{ ref('{r}') }}}}", read_parquet(source))
        write(d / "models" / folder[m.layer] / f"{m.name}.sql", sql)
    if checks:
        write(d / "macros" / "test_row_count_gt0.sql", DBT_ROW_COUNT_TEST)
        write(d / "models" / "schema.yml", dbt_schema_yml(spec.checks))


# --------------------------------------------------------------------------- sqlmesh
def sqlmesh_config(db: Path) -> str:
    return (
        f"gateways:\n  local:\n    connection:\n      type: duckdb\n      database: {db}\n"
        "default_gateway: local\n"
        "model_defaults:\n  dialect: duckdb\n  start: '2024-01-01'\n  cron: '@daily'\n"
    )


def sqlmesh_audit(c: Check) -> str:
    if c.type == "not_null":
        return f"not_null(columns := ({c.column}))"
    if c.type == "unique":
        return f"unique_values(columns := ({c.column}))"
    if c.type == "accepted_values":
        vals = ", ".join(f"'{v}'" for v in c.values)
        return f"accepted_values(column := {c.column}, is_in := ({vals}))"
    return "number_of_rows(threshold := 0)"


def render_sqlmesh(spec: Spec, source: Path, out: Path, checks: bool = True) -> None:
    d = out / "sqlmesh"
    write(d / "config.yaml", sqlmesh_config(d / "bench.duckdb"))
    audits: dict[str, list[str]] = {}
    for c in spec.checks if checks else []:
        audits.setdefault(c.model, []).append(sqlmesh_audit(c))
    for m in spec.models:
        sql = render_sql(m.sql, lambda r: f"bench.{r}", read_parquet(source))
        aud = ""
        if m.name in audits:
            aud = ",\n  audits (\n    " + ",\n    ".join(audits[m.name]) + "\n  )"
        write(d / "models" / f"{m.name}.sql", f"MODEL (\n  name bench.{m.name},\n  kind FULL{aud}\n);\n\n{sql}")


# --------------------------------------------------------------------------- baseline
def render_baseline(spec: Spec, source: Path, out: Path, checks: bool = True) -> None:
    """Statements for bench/baseline.py: CREATE OR REPLACE TABLE in DAG order, plus check queries."""
    d = out / "baseline"
    models = [{"name": m.name, "sql": render_sql(m.sql, lambda r: r, read_parquet(source))} for m in spec.models]
    check_sql = [{"name": c.name, "sql": check_failures_sql(c, c.model)} for c in spec.checks] if checks else []
    write(d / "statements.json", json.dumps({"models": models, "checks": check_sql}, indent=1))
    write(
        d / "models.sql",
        "".join(f"-- {m['name']}\ncreate or replace table {m['name']} as\n{m['sql']};\n\n" for m in models),
    )


def generate(
    n: int,
    rows: int,
    out: Path,
    data_dir: Path,
    tools: tuple[str, ...] = TOOLS,
    seed: int = SEED,
    kiban_threads: int | None = 1,
    peer_checks: bool = True,
) -> Spec:
    """Write the spec and every tool's project under `out` (replaced); return the spec."""
    source = orders_parquet(rows, data_dir)
    spec = build_spec(n, seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    meta = {"rows": rows, "source": str(source), "layers": spec.layer_counts()}
    write(out / "spec.json", json.dumps({**meta, **asdict(spec)}, indent=1))
    for tool in tools:
        if tool == "kiban":
            render_kiban(spec, source, out, kiban_threads)
        elif tool in ("dbt", "sqlmesh", "baseline"):
            {"dbt": render_dbt, "sqlmesh": render_sqlmesh, "baseline": render_baseline}[tool](
                spec, source, out, peer_checks
            )
        else:
            raise SystemExit(f"unknown tool {tool!r}")
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", "-n", type=int, required=True)
    ap.add_argument("--rows", "-r", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    root = Path(os.environ.get("KIBAN_BENCH_ROOT", "/tmp/kiban-bench"))
    ap.add_argument("--data-dir", type=Path, default=root / "data")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--kiban-threads", type=int, default=1, help="0: leave `threads` out of kiban.yml")
    ap.add_argument("--no-peer-checks", action="store_true", help="render peers without tests/audits")
    a = ap.parse_args()
    tools = tuple(t for t in a.tools.split(",") if t)
    spec = generate(a.models, a.rows, a.out, a.data_dir, tools, a.seed, a.kiban_threads or None, not a.no_peer_checks)
    print(
        f"N={a.models} R={a.rows} -> {a.out} layers={spec.layer_counts()} checks={len(spec.checks)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
