"""Compiling a suite into ONE SQL statement that measures every check of a table.

The statement has the shape DuckDB runs fastest (measured on 10M rows; see ``bench/checks.py``)::

    with "__rows" as (                              -- one aggregate scan for every row-level check
        select count(*) as "n",
               count(case when "customer_id" is null then 1 end) as "m0",        -- not_null
               count(case when "status" not in ('a', 'b') then 1 end) as "m1",   -- accepted_values
               count(case when not ("quantity" > 0) then 1 end) as "m2",          -- expression
               max("ordered_at") as "m3",                                         -- freshness
               sum("amount")::double as "m4_sum"                                  -- volume
        from R),
    "__distinct" as (select count("order_id") - count(distinct "order_id") as "m5" from R),   -- unique
    "__ref6" as (select count(*) as "m6" from R as l anti join T as r on l."c" = r."c"         -- relationships
                 where l."c" is not null),
    "__sql7" as (select count(*) as "m7" from (<the check's query>))                            -- sql
    select * from "__rows", "__distinct", "__ref6", "__sql7"

Distinct counts and anti-joins sit in their own sub-aggregates because inside the big aggregate DuckDB
plans them ~10% slower; they are still one statement, one round trip, one result row. Queries that fetch
samples of failing rows are built separately and run only for checks that failed.

Identifiers are quoted and literals escaped here; the only user SQL is that of ``expression`` and ``sql``
checks, which arrives as a parsed SQLGlot tree (see ``suite``) and is rendered back from the tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kiban.checks.quoting import literal, quote, relation_name
from kiban.checks.spec import (
    AcceptedValues,
    Expression,
    Freshness,
    NotNull,
    Pattern,
    Range,
    Relationships,
    Sql,
    Unique,
    Volume,
)
from kiban.checks.suite import Check, render

ROWS = "n"  # the alias of count(*)
TEXT_TYPES = ("VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR")


@dataclass
class Compiled:
    """The measuring statement of a suite, and how to read each check's measure from its result row."""

    sql: str
    measure: dict[str, str] = field(default_factory=dict)  # check name → alias in the result row
    parts: list[tuple[Check, str]] = field(default_factory=list)  # each check's SQL alone, to find a culprit
    predicates: dict[str, str] = field(default_factory=dict)  # row-level check → condition of a failing row


class Compiler:
    """Compiles the checks of one relation. ``columns``: lower-case name → (name, type) of the relation.
    ``one_scan``: the distinct counts (unique) in the same aggregation as the others — one job on Spark, where
    each scan of the relation is a job of its own; DuckDB scans twice in parallel faster than once."""

    def __init__(self, relation: str, columns: Mapping[str, tuple[str, str]],
                 relation_of: Callable[[str], str] = relation_name, one_scan: bool = False) -> None:
        self.relation = relation
        self.columns = columns
        self.relation_of = relation_of
        self.one_scan = one_scan

    def col(self, name: str) -> str:
        return quote(self.columns[name.lower()][0]) if name.lower() in self.columns else quote(name)

    def is_text(self, name: str) -> bool:
        kind = self.columns.get(name.lower(), ("", ""))[1].upper()
        return kind.startswith(TEXT_TYPES)

    # -- the measuring statement ---------------------------------------------------------------
    def compile(self, checks: list[Check]) -> Compiled:
        out = Compiled(sql="")
        aggregates = [f"count(*) AS {quote(ROWS)}"]
        distincts: list[str] = []
        subqueries: list[tuple[str, str]] = []  # (CTE name, its SELECT)
        for i, check in enumerate(checks):
            alias = f"m{i}"
            spec = check.spec
            predicate = self.predicate(check)
            if predicate is not None:
                expr = f"count(CASE WHEN {predicate} THEN 1 END) AS {quote(alias)}"
                aggregates.append(expr)
                out.predicates[check.name] = predicate
                out.parts.append((check, f"SELECT {expr} FROM {self.relation}"))
            elif isinstance(spec, Unique):
                expr = f"{self.duplicates(spec.columns)} AS {quote(alias)}"
                distincts.append(expr)
                out.parts.append((check, f"SELECT {expr} FROM {self.relation}"))
            elif isinstance(spec, Relationships):
                query = f"SELECT count(*) AS {quote(alias)} FROM {self.orphans(check)}"
                subqueries.append((f"__ref{i}", query))
                out.parts.append((check, query))
            elif isinstance(spec, Sql):
                query = f"SELECT count(*) AS {quote(alias)} FROM ({self.user_query(check)}) AS __failing"
                subqueries.append((f"__sql{i}", query))
                out.parts.append((check, query))
            elif isinstance(spec, Freshness):
                assert spec.column is not None
                expr = f"max({self.col(spec.column)}) AS {quote(alias)}"
                aggregates.append(expr)
                out.parts.append((check, f"SELECT {expr} FROM {self.relation}"))
            elif isinstance(spec, Volume):  # the shared count, and maybe a sum as "m<i>_sum"
                if spec.sum:
                    expr = f"CAST(sum({self.col(spec.sum)}) AS DOUBLE) AS {quote(alias + '_sum')}"
                    aggregates.append(expr)
                    out.parts.append((check, f"SELECT {expr} FROM {self.relation}"))
            else:  # row_count: the shared count
                alias = ROWS
            out.measure[check.name] = alias
        if self.one_scan:
            aggregates, distincts = aggregates + distincts, []
        ctes = [("__rows", f"SELECT {', '.join(aggregates)} FROM {self.relation}")]
        if distincts:
            ctes.append(("__distinct", f"SELECT {', '.join(distincts)} FROM {self.relation}"))
        ctes += subqueries
        if len(ctes) == 1:
            out.sql = ctes[0][1]
        else:
            out.sql = ("WITH " + ", ".join(f"{quote(name)} AS ({query})" for name, query in ctes)
                       + " SELECT * FROM " + ", ".join(quote(name) for name, _ in ctes))
        return out

    def predicate(self, check: Check) -> str | None:
        """The condition under which a row fails ``check``; None for checks that are not per row."""
        spec = check.spec
        if isinstance(spec, NotNull):
            return f"{self.col(spec.column or '')} IS NULL"
        if isinstance(spec, AcceptedValues):
            column = spec.column or ""
            values = ", ".join(literal(v, text=self.is_text(column)) for v in spec.values)
            return f"{self.col(column)} NOT IN ({values})"
        if isinstance(spec, Range):
            column = self.col(spec.column or "")
            parts = []
            if spec.min is not None:
                parts.append(f"{column} < {literal(spec.min)}")
            if spec.max is not None:
                parts.append(f"{column} > {literal(spec.max)}")
            return "(" + " OR ".join(parts) + ")"
        if isinstance(spec, Pattern):
            column = spec.column or ""
            value = self.col(column) if self.is_text(column) else f"CAST({self.col(column)} AS VARCHAR)"
            return f"NOT regexp_full_match({value}, {literal(spec.regex)})"
        if isinstance(spec, Expression):
            return f"NOT ({check.sql})"
        return None

    def duplicates(self, columns: tuple[str, ...]) -> str:
        """Surplus rows: rows whose (non-null) key another row already has."""
        if len(columns) == 1:
            c = self.col(columns[0])
            return f"count({c}) - count(DISTINCT {c})"
        present = " AND ".join(f"{self.col(c)} IS NOT NULL" for c in columns)
        key = "(" + ", ".join(self.col(c) for c in columns) + ")"
        return f"count(*) FILTER (WHERE {present}) - count(DISTINCT {key}) FILTER (WHERE {present})"

    def orphans(self, check: Check) -> str:
        """FROM … of the rows whose key is missing in the referenced asset (anti join)."""
        spec = check.spec
        assert isinstance(spec, Relationships) and spec.column and check.target
        mine = self.col(spec.column)
        theirs = quote(spec.target_column or spec.column)
        return (f"{self.relation} AS __l ANTI JOIN {self.relation_of(check.target)} AS __r "
                f"ON __l.{mine} = __r.{theirs} WHERE __l.{mine} IS NOT NULL")

    def user_query(self, check: Check) -> str:
        """A ``sql`` check's query, with the table name ``this`` standing for the relation being checked."""
        if check.sql is not None and self.relation == relation_name(check.asset):
            return check.sql
        return render(check, self.relation)[0]  # an engine that audits under another name

    # -- samples of failing rows --------------------------------------------------------------
    def samples(self, check: Check, predicate: str | None, limit: int) -> str | None:
        """A query for up to ``limit`` failing rows of ``check``; None when the check has no rows to show."""
        spec = check.spec
        if predicate is not None:
            return f"SELECT * FROM {self.relation} WHERE {predicate} LIMIT {int(limit)}"
        if isinstance(spec, Unique):
            cols = [self.col(c) for c in spec.columns]
            present = " AND ".join(f"{c} IS NOT NULL" for c in cols)
            return (f"SELECT * FROM {self.relation} WHERE {present} "
                    f"QUALIFY count(*) OVER (PARTITION BY {', '.join(cols)}) > 1 "
                    f"ORDER BY {', '.join(cols)} LIMIT {int(limit)}")
        if isinstance(spec, Relationships):
            return f"SELECT __l.* FROM {self.orphans(check)} LIMIT {int(limit)}"
        if isinstance(spec, Sql):
            return f"SELECT * FROM ({self.user_query(check)}) AS __failing LIMIT {int(limit)}"
        return None
