"""A dynamic PIVOT, made static so that it can be proven to read only masked data.

DuckDB runs ``PIVOT t ON city USING count(*)`` (no ``IN`` list) as two statements: it first creates an enum
type from the distinct values of ``city``, then pivots. Its parse tree therefore cannot be proven (it is not one
SELECT), and the console refuses what it cannot prove. So the console does the first step itself, through the
same masked path as any query: for each ``ON`` expression without an ``IN`` list, :func:`value_queries` gives the
query of its distinct values (one SELECT, checked, proven and run over the masked views, so a PII column's
values are the mask); :func:`make_static` writes them into the PIVOT as an ``IN`` list of typed literals. The
static PIVOT is one SELECT, which DuckDB serialises and :func:`kiban.catalog.safety.prove_reads` walks like any
other. A PIVOT over a masked column thus shows one column named by the mask, never a person's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiban.catalog.safety import QueryRefused

if TYPE_CHECKING:
    from sqlglot import exp

MAX_VALUES = 1000  # columns a pivot may make from one ON expression


@dataclass(frozen=True)
class ValueQuery:
    """The distinct values of one ON expression of one dynamic PIVOT, as a SELECT of (text, type) pairs."""

    pivot: int  # the pivot's position among the query's pivots
    on: int  # the expression's position in its ON list
    sql: str


def _parse(sql: str) -> exp.Expr:
    import sqlglot

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except (sqlglot.ParseError, sqlglot.errors.TokenError) as exc:
        raise QueryRefused(f"not valid SQL: {str(exc).splitlines()[0][:200]}") from None
    if tree is None:
        raise QueryRefused("the query is empty")
    return tree


def _pivots(tree: exp.Expr) -> list[exp.Pivot]:
    from sqlglot import exp

    return [p for p in tree.find_all(exp.Pivot) if not p.args.get("unpivot") and p.args.get("using")]


def is_dynamic(sql: str) -> bool:
    """Whether ``sql`` holds a DuckDB PIVOT with an ON expression that has no IN list, or is a PIVOT statement
    (``PIVOT t ON …``, which is written as ``SELECT * FROM (PIVOT t ON …)`` to be one SELECT)."""
    from sqlglot import exp

    if "pivot" not in sql.lower():
        return False
    try:
        tree = _parse(sql)
    except QueryRefused:
        return False
    return isinstance(tree, exp.Pivot) or any(not isinstance(e, exp.In) for p in _pivots(tree) for e in p.expressions)


def value_queries(sql: str) -> list[ValueQuery]:
    """The queries of the distinct values each dynamic ON expression takes (with the query's CTEs)."""
    from sqlglot import exp

    tree = _parse(sql)
    with_ = tree.args.get("with_") or tree.args.get("with")
    found: list[ValueQuery] = []
    for n, pivot in enumerate(_pivots(tree)):
        source = pivot.this
        if source is None or (any(_pivots(source)) and is_dynamic(source.sql("duckdb"))):
            raise QueryRefused("a PIVOT over another PIVOT without an IN list cannot be proven masked",
                               "give the inner PIVOT its values: ON column IN ('a', 'b')")
        for m, on in enumerate(pivot.expressions):
            if isinstance(on, exp.In):
                continue
            value = on.copy()
            select = exp.select(
                exp.cast(value.copy(), exp.DataType.build("VARCHAR")).as_("v"),
                exp.func("typeof", value.copy()).as_("t"),
            ).distinct().from_(exp.Subquery(this=source.copy()) if not isinstance(source, exp.Table)
                               else source.copy()).where(exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null())))
            select = select.order_by("v").limit(MAX_VALUES + 1)
            if with_ is not None:
                select.set("with_" if "with_" in tree.args else "with", with_.copy())
            found.append(ValueQuery(n, m, select.sql("duckdb")))
    return found


def make_static(sql: str, values: dict[tuple[int, int], list[tuple[Any, ...]]]) -> str:
    """``sql`` with each dynamic ON expression given the IN list of its ``values`` (rows of (text, type))."""
    from sqlglot import exp

    tree = _parse(sql)
    for n, pivot in enumerate(_pivots(tree)):
        for m, on in enumerate(list(pivot.expressions)):
            if isinstance(on, exp.In):
                continue
            rows = values.get((n, m), [])
            if len(rows) > MAX_VALUES:
                raise QueryRefused(f"the PIVOT would make more than {MAX_VALUES} columns from {on.sql('duckdb')}",
                                   "filter first, or give the values: ON column IN ('a', 'b')")
            if not rows:
                raise QueryRefused(f"the PIVOT has no values to make columns from ({on.sql('duckdb')} is always NULL)")
            literals = [exp.cast(exp.Literal.string(str(text)), exp.DataType.build(str(kind), dialect="duckdb"))
                        for text, kind in rows]
            on.replace(exp.In(this=on.copy(), expressions=literals))
    if isinstance(tree, exp.Pivot):
        tree = exp.select("*").from_(exp.Subquery(this=tree))
    return tree.sql("duckdb")
