"""Numbers a database keeps exactly and Arrow has no decimal for — PostgreSQL ``numeric`` without a precision (or
past 38 digits), MySQL ``decimal(p,s)`` past 38 — land exactly or are quarantined with the reason: never rounded
through a double. Both readers (DuckDB's scanner, the driver) must land the same rows and quarantine the same
rows, checked against the exact value of the source's own text.
"""

from __future__ import annotations

import json
import random
import uuid
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kiban.collect import quarantine, sessions
from kiban.collect.casting import Declared, cast_batch, decimal_scale
from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store

READERS = ["duckdb", "driver"]
SCALE, INTEGER_DIGITS = 9, 29  # DECIMAL(38,9): the default type of such a column


def fits(text: str, scale: int = SCALE, integer_digits: int = INTEGER_DIGITS) -> bool:
    """Whether the source's text is exactly a DECIMAL(integer_digits + scale, scale)."""
    if text.lower().lstrip("+-") in ("nan", "infinity", "inf"):
        return False
    with localcontext(prec=200):  # exact arithmetic on up to 200 digits (the default context keeps 28)
        value = Decimal(text)
        return value == value.quantize(Decimal(1).scaleb(-scale)) and abs(value) < Decimal(10) ** integer_digits


def random_numbers(rng: random.Random, n: int) -> list[str | None]:
    """Texts of numbers: huge, tiny, many decimals, negative, zero, -0, trailing zeros, the edges of 38,9."""
    fixed: list[str | None] = [
        "0", "-0", "0.000000000", "1.5", "-1.5", "0.1", "0.000000001", "0.0000000001", "1.1000000000000",
        "99999999999999999999999999999.999999999", "-99999999999999999999999999999.999999999",
        "100000000000000000000000000000", "12345678901234567890.123456789", "1234567890123456789.1234567891",
        "NaN", "Infinity", "-Infinity", None, "123456789012345678", "123456789012345679",
        "9007199254740993", "0.30000000000000004"]
    out = list(fixed)
    for _ in range(n):
        integer = "".join(rng.choice("0123456789") for _ in range(rng.choice([0, 1, 3, 15, 20, 28, 29, 30, 40])))
        decimals = "".join(rng.choice("0123456789") for _ in range(rng.choice([0, 1, 2, 9, 9, 10, 18, 30])))
        text = (integer or "0") + ("." + decimals if decimals else "")
        out.append(("-" if rng.random() < 0.3 else "") + text)
    return out


# -- the casting itself (any text declared as a decimal) ------------------------------------------------------------


def test_text_cast_to_a_decimal_is_refused_rather_than_rounded() -> None:
    batch = pa.RecordBatch.from_pydict({"id": [1, 2, 3, 4, 5, 6], "v": ["1.25", "1.255", "1.2500", " -0.001 ",
                                                                      "123456789.9", "NaN"]})
    con = sessions.session()
    try:
        good, bad = cast_batch(con, batch, Declared({"v": "decimal(10,2)"}, ("id",), {"v": "a hint"}), 1)
    finally:
        con.close()
    assert good.to_pydict() == {"id": [1, 3], "v": [Decimal("1.25"), Decimal("1.25")]}
    reasons = {b.location: b.reason for b in bad}
    assert reasons["id=2"] == "column v: '1.255' is not a decimal(10,2) (more than 2 decimals: it would be " \
                              "rounded); a hint"
    assert reasons["id=4"].startswith("column v: ' -0.001 ' is not a decimal(10,2) (more than 2 decimals")
    assert reasons["id=5"] == "column v: '123456789.9' is not a decimal(10,2); a hint"  # 9 integer digits > 10-2
    assert reasons["id=6"] == "column v: 'NaN' is not a decimal(10,2); a hint"
    assert [decimal_scale(t) for t in ("DECIMAL(38,9)", "decimal(10)", "numeric", "DOUBLE", "varchar")] == \
        [9, 0, 3, None, None]


# -- PostgreSQL ------------------------------------------------------------------------------------------------------

PG_SOURCE = """\
type: postgres
url: env:{env}
reader: {reader}
tables:
  t:
    table: n
    primary_key: [id]
{columns}"""


def pg(url: str, *statements: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements[:-1]:
            conn.execute(statement)
        cur = conn.execute(statements[-1], params)
        return cur.fetchall() if cur.description else []


def collect(make_project: Any, monkeypatch: pytest.MonkeyPatch, source: str, url: str, reader: str,
            columns: str = "", root: str | None = None) -> tuple[Path, Any]:
    env = f"KIBAN_NUM_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(env, url)
    path = make_project({f"sources/{source}": PG_SOURCE.format(env=env, reader=reader, columns=columns)
                         if source == "pos.yml" else MY_SOURCE.format(env=env, reader=reader, columns=columns)},
                        root=root or f"p_{reader}")
    return path, land(path, source.removesuffix(".yml"))


def land(root: Path, source: str) -> Any:
    p = load_project(root)
    store = Store(p.state_url)
    try:
        return load_table(p, source, "t", store)
    finally:
        store.close()


def landed(root: Path, source: str) -> tuple[dict[int, tuple[Any, ...]], list[tuple[str, str]]]:
    con = sessions.session()
    try:
        files = str(root / "lake" / source / "t" / "**" / "*.parquet")
        rel = con.sql(f"select * exclude (_load_id, _loaded_at) from read_parquet('{files}', union_by_name = true)")
        types = list(zip(rel.columns, [str(t) for t in rel.types], strict=True))
        return {r[0]: r[1:] for r in rel.fetchall()}, types
    finally:
        con.close()


def refused(root: Path) -> dict[str, tuple[str | None, str]]:
    p = load_project(root)
    store = Store(p.state_url)
    try:
        return {r.location: (r.column, r.reason) for r in quarantine.rows(p, store)}
    finally:
        store.close()


@pytest.fixture
def numbers(postgres_url: str) -> tuple[str, dict[int, tuple[str | None, str | None]]]:
    rng = random.Random(20261208)
    values = random_numbers(rng, 150)
    wide = random_numbers(rng, len(values) - 22)
    rows = [(i, a, b if b is None or b.lower().lstrip("-") != "infinity" else "NaN")  # numeric(50,12): no ∞
            for i, (a, b) in enumerate(zip(values, wide, strict=True), start=1)]
    pg(postgres_url, "create table n (id int primary key, a numeric, b numeric(50, 12), c numeric(10, 2))",
       "insert into n select id, a::numeric, b::numeric, 1.5 from jsonb_to_recordset(%s::jsonb) "
       "as x(id int, a text, b text) where b is null or length(split_part(ltrim(b, '-'), '.', 1)) <= 38",
       params=[json.dumps([{"id": i, "a": a, "b": b} for i, a, b in rows])])
    # the source's own text of every value (numeric(50,12) pads to 12 decimals)
    texts = pg(postgres_url, "select id, a::text, b::text from n")
    return postgres_url, {r[0]: (r[1], r[2]) for r in texts}


def expected(texts: dict[int, tuple[str | None, ...]], names: tuple[str, ...]) -> tuple[dict[int, tuple[Any, ...]],
                                                                                         dict[str, str]]:
    good: dict[int, tuple[Any, ...]] = {}
    bad: dict[str, str] = {}
    for key, values in texts.items():
        failing = [n for n, v in zip(names, values, strict=True) if v is not None and not fits(v)]
        if failing:
            bad[f"id={key}"] = failing[0]
        else:
            good[key] = tuple(None if v is None else Decimal(v) for v in values)
    return good, bad


def test_postgres_numbers_land_exactly_and_both_readers_agree(numbers: tuple[str, dict[int, Any]],
                                                              make_project: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url, texts = numbers
    good, bad = expected(texts, ("a", "b"))
    assert len(good) > 40
    assert len(bad) > 40  # the generator attacks both sides
    seen = {}
    for reader in READERS:
        root, result = collect(make_project, monkeypatch, "pos.yml", url, reader)
        rows, types = landed(root, "pos")
        assert types[1:4] == [("a", "DECIMAL(38,9)"), ("b", "DECIMAL(38,9)"), ("c", "DECIMAL(10,2)")], reader
        assert {k: v[:2] for k, v in rows.items()} == good, reader  # exact: Decimal equality, digit for digit
        quarantined = refused(root)
        assert {k: c for k, (c, _) in quarantined.items()} == bad, reader
        assert result.record.rows_read == len(texts) == result.record.rows_landed + len(bad)
        seen[reader] = (rows, quarantined)
    assert seen["duckdb"] == seen["driver"]  # the same rows, the same quarantine, the same reasons
    reasons = seen["driver"][1]
    nan = next(k for k, (a, _) in texts.items() if a == "NaN")
    assert reasons[f"id={nan}"] == ("a", "column a: 'NaN' is not a DECIMAL(38,9); PostgreSQL numeric lands as "
                                    "DECIMAL(38,9) unless declared: declare the column's type under `columns:` "
                                    "(a wider decimal(p,s), double or varchar) to land such values, then "
                                    "`kiban quarantine replay`")
    rounded = next(k for k, (a, _) in texts.items() if a == "0.0000000001")
    assert "(more than 9 decimals: it would be rounded)" in reasons[f"id={rounded}"][1]


@pytest.mark.parametrize("reader", READERS)
def test_a_declared_type_wins_and_an_incremental_read_filters_on_the_server(
        postgres_url: str, make_project: Any, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    pg(postgres_url, "create table n (id int primary key, a numeric, b numeric, c numeric(60, 30))",
       "insert into n values (1, 'NaN', 0.1, 1.000000000000000000000000000001), "
       "(2, 123456789012345678901234567890.5, '1.123456789012345678', null)")
    columns = "    columns:\n      - {name: a, type: varchar}\n      - {name: b, type: 'decimal(38,18)'}\n" \
              "    mode: incremental\n    cursor: id\n"
    root, _ = collect(make_project, monkeypatch, "pos.yml", postgres_url, reader, columns)
    rows, types = landed(root, "pos")
    assert types[1:4] == [("a", "VARCHAR"), ("b", "DECIMAL(38,18)"), ("c", "DECIMAL(38,9)")]
    assert rows[2] == ("123456789012345678901234567890.5", Decimal("1.123456789012345678"), None)
    assert refused(root) == {"id=1": ("c", "column c: '1.000000000000000000000000000001' is not a DECIMAL(38,9) "
                                           "(more than 9 decimals: it would be rounded); PostgreSQL numeric lands "
                                           "as DECIMAL(38,9) unless declared: declare the column's type under "
                                           "`columns:` (a wider decimal(p,s), double or varchar) to land such "
                                           "values, then `kiban quarantine replay`")}
    pg(postgres_url, "insert into n values (3, 'Infinity', 7, 2.5)")
    second = land(root, "pos").record
    assert second.rows_read == 2  # the cursor's own edge (2) and 3: the filter ran with the numbers as text
    rows, _ = landed(root, "pos")
    assert rows[3] == ("Infinity", Decimal(7), Decimal("2.5"))


@pytest.mark.parametrize("reader", READERS)
def test_a_table_that_landed_the_number_as_double_keeps_loading(postgres_url: str, make_project: Any,
                                                                monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    pg(postgres_url, "create table n (id int primary key, a numeric)", "insert into n values (1, 0.5)")
    # the lake has the column as DOUBLE already (as every load before this release landed it)
    root, _ = collect(make_project, monkeypatch, "pos.yml", postgres_url, reader,
                      "    columns:\n      - {name: a, type: double}\n")
    source = root / "sources" / "pos.yml"
    source.write_text(source.read_text().split("    columns:")[0])  # the declaration is gone: the default
    pg(postgres_url, "insert into n values (2, 'NaN'), (3, 0.1)")
    result = land(root, "pos")
    assert result.record.drift == []  # no drift: the landed type is kept
    assert result.notes == ["lake.pos_t: column a (PostgreSQL numeric) lands as DOUBLE, the type the lake table "
                            "has: declare {name: a, type: 'decimal(38,9)'} under `columns:` to land it exactly "
                            "(docs/connectors/databases.md#types)"]
    rows, types = landed(root, "pos")
    assert types[1] == ("a", "DOUBLE")
    assert rows[3] == (0.1,)
    assert rows[2][0] != rows[2][0]  # NaN stays NaN on both readers (the scanner said 0)
    assert refused(root) == {}


# -- MySQL -----------------------------------------------------------------------------------------------------------

MY_SOURCE = """\
type: mysql
url: env:{env}
reader: {reader}
tables:
  t:
    table: n
    primary_key: [id]
{columns}"""


def my(database: str | None, *statements: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=database,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            out: list[tuple[Any, ...]] = []
            for statement in statements:
                cur.execute(statement, params if statement is statements[-1] else None)
                out = list(cur.fetchall())
            return out
    finally:
        conn.close()



def test_mysql_wide_decimals_land_exactly_and_both_readers_agree(mysql_url: str, make_project: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    rng = random.Random(65030)
    values = [v for v in random_numbers(rng, 200) if v is None or (
        v.lower().lstrip("-") not in ("nan", "infinity") and len(v.lstrip("-").split(".")[0]) <= 35)]
    my(database, "create table n (id int primary key, d decimal(65, 30), e decimal(12, 2))")
    for i, v in enumerate(values, start=1):
        my(database, "insert into n values (%s, %s, 1.25)", params=[i, v])
    texts = {r[0]: (r[1],) for r in my(database, "select id, cast(d as char) from n")}
    good, bad = expected(texts, ("d",))
    assert len(good) > 40
    assert len(bad) > 40
    seen = {}
    for reader in READERS:
        root, result = collect(make_project, monkeypatch, "shop.yml", mysql_url, reader)
        rows, types = landed(root, "shop")
        assert types[1:3] == [("d", "DECIMAL(38,9)"), ("e", "DECIMAL(12,2)")], reader
        assert {k: v[:1] for k, v in rows.items()} == good, reader
        quarantined = refused(root)
        assert {k: c for k, (c, _) in quarantined.items()} == bad, reader
        assert all("MySQL decimal lands as DECIMAL(38,9)" in r for _, r in quarantined.values())
        assert result.record.rows_read == len(texts) == result.record.rows_landed + len(bad)
        seen[reader] = (rows, quarantined)
    assert seen["duckdb"] == seen["driver"]


@pytest.mark.parametrize("reader", READERS)
def test_a_quarantined_number_replays_once_its_type_is_declared_and_not_before(
        postgres_url: str, make_project: Any, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    pg(postgres_url, "create table n (id int primary key, a numeric, c numeric(10, 2))",
       "insert into n values (1, 0.5, 1.25), (2, 'NaN', 2.5), (3, 0.0000000001, null)")
    root, _ = collect(make_project, monkeypatch, "pos.yml", postgres_url, reader)
    assert set(refused(root)) == {"id=2", "id=3"}

    def replay() -> quarantine.ReplayResult:
        p = load_project(root)
        store = Store(p.state_url)
        try:
            return quarantine.replay(p, store, "lake.pos_t")
        finally:
            store.close()

    again = replay()  # nothing declared: the lake's DECIMAL(38,9) still refuses them — no text lands
    assert (again.tried, again.landed, again.still_failing) == (2, 0, 2)
    source = root / "sources" / "pos.yml"
    source.write_text(source.read_text() + "    columns:\n      - {name: a, type: varchar}\n")
    again = replay()
    assert (again.landed, again.still_failing) == (2, 0)
    rows, types = landed(root, "pos")
    assert dict(types)["a"] == "VARCHAR"
    assert dict(types)["c"] == "DECIMAL(10,2)"
    assert rows[2] == ("NaN", Decimal("2.50"))
    assert rows[3] == ("0.0000000001", None)


def test_switching_a_double_column_to_exact_is_a_recorded_type_change(postgres_url: str, make_project: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pg(postgres_url, "create table n (id int primary key, a numeric)", "insert into n values (1, 0.5)")
    root, _ = collect(make_project, monkeypatch, "pos.yml", postgres_url, "duckdb",
                      "    columns:\n      - {name: a, type: double}\n")
    source = root / "sources" / "pos.yml"
    source.write_text(source.read_text().replace("type: double", "type: 'decimal(38,9)'"))
    pg(postgres_url, "insert into n values (2, 12345678901234567890.123456789)")
    result = land(root, "pos")
    assert [(d.change, d.column, d.old_type, d.new_type, action) for d, action in result.record.drift] == \
        [("retyped", "a", "DOUBLE", "DECIMAL(38,9)", "evolved")]
    con = sessions.session()
    try:  # each file as it is: this load's holds the exact value
        found = [con.execute("select a from read_parquet(?) where id = 2", [str(f)]).fetchall()
                 for f in sorted((root / "lake" / "pos" / "t").rglob("*.parquet"))]
    finally:
        con.close()
    assert [f for f in found if f] == [[(Decimal("12345678901234567890.123456789"),)]]
