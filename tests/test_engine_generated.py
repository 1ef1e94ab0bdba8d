"""One meaning of SQL, attacked by a generator: random typed expressions over random rows, run on DuckDB and, as
kiban's PostgreSQL engine transpiles them (no column types known: ``engines.postgres`` passes none), on
PostgreSQL. Every result must equal DuckDB's — values, NULLs, the kind of value a reader gets (an integer, a
double, a decimal, text, a date, an instant) — or the expression be refused when the project loads. A build that
fails on PostgreSQL is not silent, but is counted too: the grammar uses only functions both engines have.

The default run is a fixed set of seeds (fast); ``-m slow`` runs many more (``KIBAN_GENERATED_SEEDS``).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import psycopg
import pytest

from kiban.engines.dialect import transpile
from kiban.engines.meaning import POSTGRES_FUNCTIONS
from kiban.errors import KibanError
from tests.helpers.values import same

ZONE = "America/Los_Angeles"
COLUMNS = [("id", "INTEGER", "integer"), ("i", "INTEGER", "integer"), ("j", "BIGINT", "bigint"),
           ("f", "DOUBLE", "double precision"), ("n", "DECIMAL(10,2)", "numeric(10,2)"),
           ("s", "VARCHAR", 'text collate "C"'), ("p", "VARCHAR", 'text collate "C"'), ("d", "DATE", "date"),
           ("ts", "TIMESTAMP", "timestamp"), ("tz", "TIMESTAMPTZ", "timestamptz"), ("b", "BOOLEAN", "boolean")]
ALPHABET = ["a", "b", "B", "c", "é", "É", "ü", "日", " ", "_", "x", "Z", "1", "-", "\\", "\n", "%"]
STRFTIME = ["%Y", "%m", "%d", "%-d", "%-m", "%y", "%H", "%-H", "%I", "%p", "%M", "%S", "%f", "%g", "%j", "%a",
            "%A", "%b", "%B", "%u", "%V", "%G", "%%", "%U", "%W", "%w", "%Z"]
GLOBAL = ", 'g'"
PATTERNS = ["a%", "%b%", "_", "é%", "%É", "a_c", "%", "B", "%\\%", "\\_%", "%\\"]  # LIKE patterns (column p)
LITERAL_TEXT = ["-", " ", "Day ", "W", "at", ":", "/", "T", "HH", "\"q\"", "Month"]


def rows(seed: int, count: int = 24) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)

    def maybe(value: Any) -> Any:
        return None if rnd.random() < 0.15 else value

    out = []
    for k in range(count):
        day = date(2024, 1, 1) + timedelta(days=rnd.choice([-1, 0, 30, 59, 60, 69, 70, 120, 181, 307, 308, 365,
                                                             rnd.randint(-4000, 4000)]))
        wall = datetime(day.year, day.month, day.day, rnd.choice([0, 1, 2, 3, 11, 12, 13, 23]),
                        rnd.choice([0, 1, 30, 59]), rnd.choice([0, 1, 59]), rnd.choice([0, 250000, 750000]))
        text = "".join(rnd.choice(ALPHABET) for _ in range(rnd.choice([0, 1, 3, 5, 8])))
        out.append((k, maybe(rnd.choice([0, 1, -1, 2, -2, 7, -7, 13, 100, rnd.randint(-999, 999)])),
                    maybe(rnd.choice([0, 3, -3, 10_000_000_000, rnd.randint(-10**6, 10**6)])),
                    maybe(rnd.choice([0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1e-9, 123.456, rnd.uniform(-1000, 1000)])),
                    maybe(Decimal(rnd.randint(-99999, 99999)) / 100),
                    maybe(text), maybe(rnd.choice(PATTERNS)),
                    maybe(day), maybe(wall), maybe(wall.replace(tzinfo=UTC) + timedelta(hours=rnd.randint(-12, 12))),
                    maybe(rnd.random() < 0.5)))
    return out


class Grammar:
    """Random expressions of a type: int, float, dec, text, bool, date, ts, tz."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def small(self) -> str:
        return str(self.rnd.choice([-7, -3, -2, -1, 0, 1, 2, 3, 5, 9]))

    def pick(self, options: list[Callable[[int], str]], depth: int) -> str:
        return self.rnd.choice(options)(depth)

    def of(self, kind: str, depth: int = 0) -> str:
        leaf = depth >= 3 or self.rnd.random() < 0.25
        return getattr(self, kind)(depth + 1, leaf)

    def int(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["i", "j", "id", self.small()])
        o = self.of
        part = self.rnd.choice(["year", "month", "day", "hour", "minute", "second", "millisecond", "dow",
                                "isodow", "doy", "week", "quarter", "isoyear", "decade", "century"])
        return self.pick([
            lambda d: f"({o('int', d)} + {o('int', d)})", lambda d: f"({o('int', d)} - {o('int', d)})",
            lambda d: f"({o('int', d)} * {self.small()})", lambda d: f"({o('int', d)} // {o('int', d)})",
            lambda d: f"({o('int', d)} % {o('int', d)})", lambda d: f"abs({o('int', d)})",
            lambda d: f"length({o('text', d)})", lambda d: f"strpos({o('text', d)}, {o('text', d)})",
            lambda d: f"year({o('date', d)})", lambda d: f"month({o('ts', d)})", lambda d: f"day({o('tz', d)})",
            lambda d: f"hour({o('ts', d)})", lambda d: f"second({o('ts', d)})", lambda d: f"minute({o('tz', d)})",
            lambda d: f"extract({part} from {o(self.rnd.choice(['ts', 'tz']), d)})",
            lambda d: f"date_part('{part}', {o('ts', d)})", lambda d: f"dayofweek({o('date', d)})",
            lambda d: f"round({o('int', d)}, {self.rnd.choice(['-1', '0', '1'])})", lambda d: f"sign({o('int', d)})",
            lambda d: f"date_diff('{self.rnd.choice(['day', 'month', 'year', 'quarter'])}', {o('date', d)}, "
                      f"{o('date', d)})",
            lambda d: f"cast({o('float', d)} as integer)", lambda d: f"cast({o('dec', d)} as integer)",
            lambda d: f"greatest({o('int', d)}, {o('int', d)})", lambda d: f"least({o('int', d)}, {o('int', d)})",
            lambda d: f"coalesce({o('int', d)}, {o('int', d)})", lambda d: f"nullif({o('int', d)}, {o('int', d)})",
            lambda d: f"case when {o('bool', d)} then {o('int', d)} else {o('int', d)} end",
            lambda d: f"ascii({o('text', d)})", lambda d: f"unicode({o('text', d)})",
            lambda d: f"cast(round({o('float', d)}) as bigint)",
            lambda d: f"[i, j, id][{self.rnd.randint(-4, 4)}]", lambda d: f"[10, 20, 30][{o('int', d)}]",
        ], depth)

    def float(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["f", "0.5e0", "-2.5e0"])
        o = self.of
        num = self.rnd.choice(["int", "float", "dec"])
        return self.pick([
            lambda d: f"({o(num, d)} / {o(self.rnd.choice(['int', 'float', 'dec']), d)})",
            lambda d: f"({o('float', d)} + {o('float', d)})", lambda d: f"({o('float', d)} * {o('int', d)})",
            lambda d: f"round({o('float', d)}, {self.rnd.choice(['0', '1', '2', '-1'])})",
            lambda d: f"round({o('float', d)})", lambda d: f"floor({o('float', d)})",
            lambda d: f"ceil({o('float', d)})",
            lambda d: f"cast({o('int', d)} as double)", lambda d: f"epoch({o('ts', d)})",
            lambda d: f"abs({o('float', d)})", lambda d: f"({o('float', d)} // {o('float', d)})",
            lambda d: f"({o('dec', d)} // {o('int', d)})", lambda d: f"extract(epoch from {o('tz', d)})",
        ], depth)

    def dec(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["n", "2.50", "-0.05"])
        o = self.of
        return self.pick([
            lambda d: f"({o('dec', d)} + {o('dec', d)})", lambda d: f"({o('dec', d)} * 2)",
            lambda d: f"round({o('dec', d)}, {self.rnd.choice(['0', '1'])})", lambda d: f"abs({o('dec', d)})",
            lambda d: f"round({o('dec', d)})", lambda d: f"cast({o('int', d)} as decimal(12, 2))",
            lambda d: f"({o('dec', d)} - {o('int', d)})", lambda d: f"coalesce({o('dec', d)}, n)",
        ], depth)

    def fmt(self) -> str:
        parts = [self.rnd.choice(STRFTIME + LITERAL_TEXT) for _ in range(self.rnd.randint(1, 4))]
        return "".join(parts).replace("'", "''")

    def pattern(self) -> str:
        return self.rnd.choice(["a", "[aé]", "b+", "(a)(b)?", "[A-Z]", ".", "^a", "x$", "[^a-z]", "é|É", "a.b",
                                "\\bb", "b\\b", "\\Bb", "[[:alpha:]]+", "\\w\\s", "[].]", "x\\z", "(?i)b", "\\d"])

    def text(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["s", "p", "'aB'", "'é'", "''"])
        o = self.of
        k = self.small
        return self.pick([
            lambda d: f"upper({o('text', d)})", lambda d: f"lower({o('text', d)})",
            # a start before the string or a negative length: DuckDB 1.5.5's own answer depends on how the
            # vector is executed (all-ASCII or not, constant or not); kiban.substring follows the general path
            lambda d: f"substr({o('text', d)}, {self.rnd.randint(1, 6)}, {self.rnd.randint(0, 4)})",
            lambda d: f"substring({o('text', d)}, {k()})", lambda d: f"substr(s, {k()}, {k()})",
            lambda d: f"left({o('text', d)}, {k()})", lambda d: f"right({o('text', d)}, {k()})",
            lambda d: f"({o('text', d)} || {o('text', d)})", lambda d: f"concat({o('text', d)}, {o('text', d)})",
            lambda d: f"trim({o('text', d)})", lambda d: f"replace({o('text', d)}, 'a', 'é')",
            lambda d: f"lpad({o('text', d)}, {self.rnd.randint(0, 6)}, '*')", lambda d: f"reverse({o('text', d)})",
            lambda d: f"strftime({o(self.rnd.choice(['date', 'ts', 'tz']), d)}, '{self.fmt()}')",
            # not decimals: DuckDB writes a decimal with its type's scale, PostgreSQL with its value's (left alone)
            lambda d: f"cast({o(self.rnd.choice(['int', 'date', 'bool', 'float', 'ts']), d)} as varchar)",
            lambda d: "cast(n as varchar)",
            lambda d: f"regexp_extract({o('text', d)}, '{self.pattern()}', {self.rnd.choice([0, 1])})",
            lambda d: f"regexp_replace({o('text', d)}, '{self.pattern()}', '<\\0>'{self.rnd.choice(['', GLOBAL])})",
            lambda d: f"split_part({o('text', d)}, '', {self.rnd.choice([0, 1, 2, -1])})",
            lambda d: f"split_part({o('text', d)}, '{self.rnd.choice(['a', ' ', 'é'])}', "
                      f"{self.rnd.choice([0, 1, 2, -1])})",
            lambda d: f"repeat({o('text', d)}, {self.rnd.randint(0, 2)})", lambda d: f"dayname({o('date', d)})",
            lambda d: f"coalesce({o('text', d)}, {o('text', d)})",
            lambda d: f"greatest({o('text', d)}, {o('text', d)})",
            lambda d: f"case when {o('bool', d)} then {o('text', d)} end",
            lambda d: f"case when {o('bool', d)} then 'a' when {o('bool', d)} then '_' else 'B' end",
        ], depth)

    def bool(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["b", "true", "(i > 0)"])
        o = self.of
        kind = self.rnd.choice(["int", "float", "dec", "text", "date", "tz"])
        return self.pick([
            lambda d: f"({o(kind, d)} < {o(kind, d)})", lambda d: f"({o(kind, d)} = {o(kind, d)})",
            lambda d: f"({o('text', d)} like {o('text', d)})", lambda d: f"({o('text', d)} ilike {o('text', d)})",
            lambda d: f"({o('text', d)} ilike p)", lambda d: f"({o('text', d)} not ilike p)",
            lambda d: f"({o('text', d)} not like p)", lambda d: f"({o('text', d)} like '%\\_%')",
            lambda d: f"({o('text', d)} not similar to '{self.pattern()}')",
            lambda d: f"regexp_matches({o('text', d)}, '{self.pattern()}')",
            lambda d: f"regexp_full_match({o('text', d)}, '{self.pattern()}')",
            lambda d: f"({o('text', d)} similar to '{self.pattern()}')",
            lambda d: f"starts_with({o('text', d)}, {o('text', d)})", lambda d: f"contains({o('text', d)}, 'a')",
            lambda d: f"({o(kind, d)} is null)", lambda d: f"(not {o('bool', d)})",
            lambda d: f"({o('bool', d)} and {o('bool', d)})", lambda d: f"({o('bool', d)} or {o('bool', d)})",
            lambda d: f"({o('int', d)} between {self.small()} and {self.small()})",
            lambda d: f"({o(kind, d)} is distinct from {o(kind, d)})",
        ], depth)

    def date(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["d", "date '2024-02-29'", "date '2023-12-31'"])
        o = self.of
        return self.pick([
            lambda d: f"cast({o('ts', d)} as date)", lambda d: f"cast({o('tz', d)} as date)",
            lambda d: f"last_day({o('date', d)})", lambda d: f"({o('date', d)} + {self.small()})",
            lambda d: f"cast({o('date', d)} + interval '{self.small()}' month as date)",
            lambda d: f"greatest({o('date', d)}, {o('date', d)})",
        ], depth)

    def ts(self, depth: int, leaf: bool) -> str:
        if leaf:
            return self.rnd.choice(["ts", "timestamp '2024-03-10 02:30:00'"])
        o = self.of
        unit = self.rnd.choice(["year", "quarter", "month", "week", "day", "hour", "minute"])
        return self.pick([
            lambda d: f"date_trunc('{unit}', {o(self.rnd.choice(['ts', 'date']), d)})",
            lambda d: f"({o('ts', d)} + interval '{self.small()}' hour)",
            lambda d: f"({o('ts', d)} + interval '{self.small()}' month)",
            lambda d: f"cast({o('date', d)} as timestamp)",
            lambda d: f"strptime(strftime({o('ts', d)}, '%d/%m/%Y %I:%M:%S %p'), '%d/%m/%Y %I:%M:%S %p')",
            lambda d: f"strptime(cast({o('date', d)} as varchar), '%Y-%m-%d')",
            lambda d: f"epoch_ms(({o('int', d)}) % 36500 * 86400000)",  # not before year 1: Python has no BC
        ], depth)

    def tz(self, depth: int, leaf: bool) -> str:
        if leaf:
            return "tz"
        o = self.of
        return self.pick([
            lambda d: f"date_trunc('{self.rnd.choice(['month', 'day', 'minute'])}', {o('tz', d)})",
            lambda d: f"({o('tz', d)} + interval '{self.small()}' hour)",
            lambda d: f"({o('tz', d)} + interval '{self.small()}' day)",
        ], depth)


WINDOWS = ["row_number() over (partition by b order by {int}, id)", "lag({text}, 1, 'none') over (order by id)",
           "sum({int}) over (order by id rows between 1 preceding and current row)",
           "rank() over (order by {date} desc)", "first_value({int}) over (partition by b order by id desc)",
           "count({text}) over (partition by b)", "lead({dec}, 2) over (order by id)",
           "avg({float}) over (order by id rows between unbounded preceding and current row)",
           "dense_rank() over (order by {text})", "ntile(3) over (order by {int} nulls first, id)"]
AGGREGATES = ["sum({int})", "avg({int})", "avg({float})", "avg({dec})", "min({text})", "max({text})",
              "count(distinct {text})", "stddev({float})", "var_pop({int})", "bool_and({bool})",
              "string_agg({text}, ',' order by {text}, id)", "count(*)", "sum({dec})", "max({date})",
              "avg({int}) over (partition by b)"]


def statements(seed: int, count: int) -> list[str]:
    rnd = random.Random(seed * 7919)
    grammar = Grammar(rnd)
    out = []
    for _ in range(count):
        shape = rnd.random()
        if shape < 0.75:
            kind = rnd.choice(["int", "int", "float", "dec", "text", "text", "bool", "date", "ts", "tz"])
            out.append(f"select id, {grammar.of(kind)} as v from g order by id")
        elif shape < 0.9:
            agg = rnd.choice(AGGREGATES)
            for kind in ("int", "float", "dec", "text", "bool", "date"):
                agg = agg.replace("{" + kind + "}", grammar.of(kind, 2), 1).replace("{" + kind + "}", "s")
            if rnd.random() < 0.4:
                agg = rnd.choice(WINDOWS)
                for kind in ("int", "float", "dec", "text", "date"):
                    agg = agg.replace("{" + kind + "}", grammar.of(kind, 2))
                if rnd.random() < 0.3:
                    out.append(f"select id, {agg} as v from g qualify v > 1 order by id")
                    continue
            if " over " in agg:
                out.append(f"select id, {agg} as v from g order by id")
            elif rnd.random() < 0.2:
                out.append(f"select b, {agg} as v from g group by all order by b nulls first")
            else:
                out.append(f"select b, {agg} as v from g group by b order by b nulls first")
        elif shape < 0.95:  # a series: integers, or dates and instants by a step of time
            a, b, step = rnd.randint(-5, 5), rnd.randint(-5, 5), rnd.choice([1, 2, -1, -3])
            if rnd.random() < 0.5:
                out.append(f"select x from {rnd.choice(['range', 'generate_series'])}({a}, {b}, {step}) s(x) "
                           "order by x")
            else:
                start = grammar.of(rnd.choice(["date", "ts", "tz"]), 2)
                unit = rnd.choice(["month", "day", "hour"])
                span = rnd.randint(-3, 3)  # DuckDB refuses a step away from the end
                step = abs(step) if span >= 0 else -abs(step)
                out.append(f"select id, x from g, {rnd.choice(['range', 'generate_series'])}({start}, {start} + "
                           f"interval '{span} {unit}', interval '{step} {unit}') s(x) order by id, x")
        elif shape < 0.97:  # text values of the model's own: VALUES, UNION
            words = rnd.sample(["a", "B", "_", "b", "A", "é", "Z", " "], 4)
            if rnd.random() < 0.5:
                rows_ = ", ".join(f"('{w}')" for w in words)
                out.append(f"select k, count(*) from (values {rows_}) v(k) group by k order by k")
            else:
                out.append("select min(k), max(k), string_agg(k, '' order by k) from ("
                           + " union all ".join(f"select '{w}' as k" for w in words) + ") u")
        else:
            key = grammar.of(rnd.choice(["text", "int", "date"]))
            direction = rnd.choice(["", " desc", " nulls first", " desc nulls last"])
            out.append(f"select {key} as k, id from g order by k{direction}, id")
    return out


def kind(value: Any) -> str:
    """What a reader gets: the Python type a driver hands over (a bool is not an integer)."""
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return "instant" if value.tzinfo else "timestamp"
    return type(value).__name__


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{ZONE}'")
    yield con
    con.close()


@pytest.fixture(scope="module", params=["default", "en-US"])
def pg(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """A database in the server's default collation, and one whose default collation is ICU's en-US (a < B)."""
    from tests.conftest import need_service

    need_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"kiban_generated_{uuid.uuid4().hex[:8]}"
    icu = " template template0 locale_provider icu icu_locale 'en-US' locale 'C.UTF-8'"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
        try:
            admin.execute(f'create database "{name}"{icu if request.param == "en-US" else ""}')
        except psycopg.Error as exc:
            pytest.skip(f"this PostgreSQL cannot create an {request.param} database: {exc}")
    conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True)
    conn.execute("select set_config('TimeZone', %s, false)", [ZONE])  # what kiban's engine sets
    conn.execute("create schema kiban")
    for function in POSTGRES_FUNCTIONS:  # what PostgresEngine.prepare creates
        conn.execute(function.encode())
    yield conn
    conn.close()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


def load(duck: duckdb.DuckDBPyConnection, pg: psycopg.Connection[Any], seed: int) -> None:
    data = rows(seed)
    duck.execute("create or replace table g (" + ", ".join(f"{n} {t}" for n, t, _ in COLUMNS) + ")")
    duck.executemany("insert into g values (" + ", ".join("?" for _ in COLUMNS) + ")", data)
    pg.execute("drop table if exists g")
    pg.execute("create table g (" + ", ".join(f"{n} {t}" for n, _, t in COLUMNS) + ")")  # as a lake table
    with pg.cursor() as cur:
        cur.executemany("insert into g values (" + ", ".join("%s" for _ in COLUMNS) + ")", data)


def findings(duck: duckdb.DuckDBPyConnection, pg: psycopg.Connection[Any], seed: int,
             count: int) -> tuple[list[str], dict[str, int]]:
    load(duck, pg, seed)
    wrong: list[str] = []
    tally = {"same": 0, "refused": 0, "both fail": 0}
    for sql in statements(seed, count):
        try:
            result = duck.execute(sql)
            huge = [str(c[1]) == "HUGEINT" for c in result.description or []]
            expected: list[tuple[Any, ...]] | None = result.fetchall()
        except duckdb.Error:
            expected = None
        try:
            written = transpile(sql, "postgres", "generated")  # as PostgresEngine.build calls it
        except KibanError:
            tally["refused"] += 1
            continue
        try:
            got = pg.execute(written.encode()).fetchall()
        except psycopg.Error as exc:
            if expected is None:
                tally["both fail"] += 1
            else:
                wrong.append(f"fails on PostgreSQL only: {sql}\n    {str(exc).splitlines()[0]}\n    {written}")
            continue
        if expected is None:
            if "stddev(" in sql or "var_pop(" in sql:  # DuckDB: "out of range" over ±inf; PostgreSQL: NaN
                tally["both fail"] += 1
            else:
                wrong.append(f"fails on DuckDB only: {sql}\n    {written}")
            continue
        # DuckDB's sum of bigints is a HUGEINT, PostgreSQL's numeric: whole numbers either way (left alone)
        bad = [(g, e) for g, e in zip(got, expected, strict=False)
               if len(g) != len(e) or not all(same(x, y) and (x is None or y is None or kind(x) == kind(y)
                                                              or (wide and kind(x) == "Decimal"))
                                              for x, y, wide in zip(g, e, huge, strict=True))]
        if len(got) != len(expected) or bad:
            wrong.append(f"different: {sql}\n    PostgreSQL, DuckDB: {bad[:2]}\n    {written}")
            continue
        tally["same"] += 1
    return wrong, tally


SEEDS = [1, 2, 3, 4, 5]
COUNT = 200


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_expressions_mean_the_same_on_postgres(duck: duckdb.DuckDBPyConnection,
                                                         pg: psycopg.Connection[Any], seed: int) -> None:
    wrong, tally = findings(duck, pg, seed, COUNT)
    assert not wrong, f"{len(wrong)} of {COUNT} ({tally}):\n" + "\n".join(wrong[:15])
    assert tally["refused"] < COUNT // 10, tally  # refusals are the exception, not the way out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_many_generated_expressions_mean_the_same_on_postgres(duck: duckdb.DuckDBPyConnection,
                                                              pg: psycopg.Connection[Any]) -> None:
    seeds = range(100, 100 + int(os.environ.get("KIBAN_GENERATED_SEEDS", "20")))
    problems: list[str] = []
    total: dict[str, int] = {}
    for seed in seeds:
        wrong, tally = findings(duck, pg, seed, 300)
        problems += [f"seed {seed}: {w}" for w in wrong]
        for k, v in tally.items():
            total[k] = total.get(k, 0) + v
    print(f"GENERATED: {len(seeds)} seeds × 300 statements: {total}, {len(problems)} differences")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])
