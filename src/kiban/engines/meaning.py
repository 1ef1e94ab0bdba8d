"""One meaning of SQL: constructs that PostgreSQL or Spark compute differently from DuckDB, rewritten to
DuckDB's meaning or refused before anything runs (issue 18). Each was measured on the three engines; the
differential corpus (tests/test_engine_meaning.py) checks every row of this table:

| DuckDB computes | PostgreSQL | Spark SQL |
|---|---|---|
| ``a / b``: always a double; ``x / 0`` is ±inf (NaN for 0/0) | error on 0: written as a CASE | the same CASE |
| ``a % b``, ``a // b`` by zero: NULL | error: ``b`` → ``nullif(b, 0)`` | the same |
| ``cast(<double> as int)`` rounds half to even, ``cast(<decimal> as int)`` half away | the same | truncates: ``bround`` / ``round`` first |
| ``round(<double>)``: half away from zero | half to even: ``round(cast(x as numeric))`` | native |
| ``dayofweek(d)``, ``date_part('dow', d)``: Sunday 0 … Saturday 6 | ``extract(dow …)`` | 1 … 7: ``dayofweek(d) - 1`` |
| ``date_diff('month', a, b)``: boundaries crossed (Jan 31 → Feb 1 is 1) | native (SQLGlot) | whole units: both truncated first |
| ``date_diff('week', …)`` | refused | refused |
| text order: bytes (``'B' < 'a'``) | the database's collation: lake text columns, casts to text and text literals compared with text get ``COLLATE "C"`` | native |
| ``PIVOT`` | refused | refused (DuckDB's PIVOT finds its columns from the data) |

Types come from SQLGlot's annotation of the model alone (literals, casts, functions, ``/``); a bare column's
type is not known here, so ``cast(col as int)`` of a double *column* keeps Spark's truncation — cast it
through ``round()`` explicitly (documented in docs/scale-out.md).
"""

from __future__ import annotations

from typing import Any

INT_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINT", "UBIGINT")
FLOAT_TYPES = ("FLOAT", "DOUBLE")
DIFF_UNITS = ("YEAR", "QUARTER", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND")


class Refused(Exception):  # noqa: N818 - a verdict, carried to dialect.transpile's error
    """A construct with no faithful rewrite: ``construct`` names it, ``hint`` says how to write it instead."""

    def __init__(self, construct: str, hint: str, node: Any = None) -> None:
        super().__init__(construct)
        self.construct = construct
        self.hint = hint
        self.node = node


def annotate(tree: Any) -> Any:
    """The tree with SQLGlot's types (where the model alone tells them)."""
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.annotate_types import annotate_types

    try:
        return annotate_types(tree, dialect="duckdb")
    except (SqlglotError, KeyError, ValueError, TypeError, AttributeError):  # an exotic tree: no types, no loss
        return tree


def _type(node: Any) -> str:
    """The annotated type of an expression (``DOUBLE``, ``DECIMAL``, ``UNKNOWN``…)."""
    kind = getattr(node, "type", None)
    return kind.this.name if kind is not None and hasattr(kind.this, "name") else "UNKNOWN"


def _named(datatype: Any) -> str:
    """The name of a DataType node (``INT``, ``VARCHAR``)."""
    return datatype.this.name if hasattr(datatype.this, "name") else str(datatype.this).upper()


def rewrite_tree(tree: Any, target: str) -> Any:
    """Every node rewritten, children before their parents (so a rewrite copies rewritten children)."""
    from sqlglot import exp

    tree = annotate(tree)
    for node in reversed(list(tree.walk())):
        new = rewrite(node, target)
        if new is not node:
            if isinstance(node, exp.Div):  # DuckDB's `/` is a double: what a cast around it must know
                new.type = exp.DataType.build("double")
            elif getattr(node, "type", None) is not None and getattr(new, "type", None) is None:
                new.type = node.type
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def rewrite(node: Any, target: str) -> Any:
    """``node`` rewritten so that ``target`` computes what DuckDB computes; raises Refused when it cannot."""
    from sqlglot import exp

    pg = target == "postgres"
    if isinstance(node, exp.Pivot) or (isinstance(node, exp.Anonymous) and node.name.upper() == "PIVOT"):
        raise Refused("PIVOT", "write the columns out: sum(case when k = 'a' then v end) as a, …", node)
    if isinstance(node, exp.Div) and not node.args.get("typed"):
        return _divide(node, target)
    if isinstance(node, (exp.Mod, exp.IntDiv)):
        divisor = exp.Nullif(this=node.expression.copy(), expression=exp.Literal.number(0))
        return type(node)(this=node.this.copy(), expression=divisor)
    if isinstance(node, exp.Cast) and not pg and _named(node.to) in INT_TYPES:
        inner = _type(node.this)
        if inner in FLOAT_TYPES:  # DuckDB: half to even; Spark would truncate
            return exp.Cast(this=exp.Anonymous(this="bround", expressions=[node.this.copy(), exp.Literal.number(0)]),
                            to=node.to.copy())
        if inner == "DECIMAL":  # DuckDB: half away from zero (Spark's round)
            return exp.Cast(this=exp.Round(this=node.this.copy(), decimals=exp.Literal.number(0)), to=node.to.copy())
    if pg and isinstance(node, exp.Round) and node.args.get("decimals") is None:
        return exp.Round(this=exp.Cast(this=node.this.copy(), to=exp.DataType.build("numeric")))
    if isinstance(node, exp.DayOfWeek) or _date_part(node) == "DOW":
        value = node.this if isinstance(node, exp.DayOfWeek) else _date_part_value(node)
        if pg:
            return exp.Cast(this=exp.Extract(this=exp.var("dow"), expression=value.copy()),
                            to=exp.DataType.build("bigint"))
        return exp.Sub(this=exp.Anonymous(this="dayofweek", expressions=[value.copy()]),
                       expression=exp.Literal.number(1))
    if isinstance(node, exp.Anonymous) and node.name.lower() == "weekday" and len(node.expressions) == 1:
        value = node.expressions[0]  # DuckDB's weekday is dow (Sunday 0); Spark's is Monday 0
        if pg:
            return exp.Cast(this=exp.Extract(this=exp.var("dow"), expression=value.copy()),
                            to=exp.DataType.build("bigint"))
        return exp.Sub(this=exp.Anonymous(this="dayofweek", expressions=[value.copy()]),
                       expression=exp.Literal.number(1))
    if isinstance(node, exp.DateDiff):
        return _date_diff(node, target)
    if pg and isinstance(node, exp.Literal) and node.is_string and _collatable(node):
        return exp.Collate(this=node.copy(), expression=exp.Identifier(this="C", quoted=True))
    if pg and isinstance(node, exp.Cast) and _named(node.to) in ("VARCHAR", "TEXT", "CHAR") \
            and not isinstance(node.parent, exp.Collate):
        return exp.Collate(this=node.copy(), expression=exp.Identifier(this="C", quoted=True))
    return node


def _divide(node: Any, target: str) -> Any:
    """``a / b`` as DuckDB computes it: a double, ±inf (or NaN) when ``b`` is 0, NULL when either is NULL."""
    from sqlglot import exp

    double = exp.DataType.build("double precision" if target == "postgres" else "double")
    a = exp.Cast(this=node.this.copy(), to=double.copy())
    b = exp.Cast(this=node.expression.copy(), to=double.copy())

    def special(text: str) -> Any:
        return exp.Cast(this=exp.Literal.string(text), to=double.copy())

    if isinstance(node.expression, exp.Literal) and node.expression.is_number and float(node.expression.name) != 0:
        return exp.Div(this=a, expression=node.expression.copy(), typed=True)
    zero = exp.Literal.number(0)
    by_zero = exp.Case(ifs=[exp.If(this=exp.Is(this=a.copy(), expression=exp.Null()), true=exp.Null()),
                            exp.If(this=exp.GT(this=a.copy(), expression=zero.copy()), true=special("Infinity")),
                            exp.If(this=exp.LT(this=a.copy(), expression=zero.copy()), true=special("-Infinity"))],
                       default=special("NaN"))
    return exp.Case(ifs=[exp.If(this=exp.EQ(this=b.copy(), expression=zero), true=by_zero)],
                    default=exp.Div(this=a, expression=b, typed=True))


def _date_part(node: Any) -> str | None:
    """The part ``date_part('dow', d)`` / ``extract(dow from d)`` asks for, upper case; None for other nodes."""
    from sqlglot import exp

    if isinstance(node, exp.Extract):
        return node.this.name.upper() if isinstance(node.this, (exp.Var, exp.Identifier, exp.Literal)) else None
    if isinstance(node, exp.Anonymous) and node.name.lower() in ("date_part", "datepart") and len(node.expressions) == 2:
        part = node.expressions[0]
        return part.name.upper() if isinstance(part, exp.Literal) and part.is_string else None
    return None


def _date_part_value(node: Any) -> Any:
    from sqlglot import exp

    return node.expression if isinstance(node, exp.Extract) else node.expressions[1]


def _date_diff(node: Any, target: str) -> Any:
    """``date_diff(unit, a, b)``: DuckDB counts the unit's boundaries between a and b."""
    from sqlglot import exp

    unit = (node.args.get("unit").name if node.args.get("unit") is not None else "DAY").upper().rstrip("S")
    if unit not in DIFF_UNITS:
        raise Refused(f"date_diff('{unit.lower()}', …)",
                      "count days instead: date_diff('day', a, b) // 7 for weeks (DuckDB's week boundaries "
                      "differ between engines)", node)
    if target == "postgres":
        return node  # SQLGlot writes boundary arithmetic (date_trunc, then the difference)
    truncated = [exp.Anonymous(this="date_trunc", expressions=[exp.Literal.string(unit), side.copy()])
                 for side in (node.expression, node.this)]
    return exp.Anonymous(this="timestampdiff", expressions=[exp.var(unit), *truncated])


def _collatable(node: Any) -> bool:
    """A text literal compared or ordered with other text: only then does its collation matter, and only then
    may it carry COLLATE (``date_col < '2024-01-01' COLLATE "C"`` would not compare a date any more)."""
    from sqlglot import exp

    parent = node.parent
    if isinstance(parent, (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)):
        others = [parent.left if parent.right is node else parent.right]
    elif isinstance(parent, (exp.Least, exp.Greatest)):
        others = [e for e in (parent.this, *parent.expressions) if e is not node]
    else:
        return False
    return all(_type(o) in ("VARCHAR", "TEXT", "CHAR") for o in others)
