"""One meaning of SQL: constructs that PostgreSQL or Spark compute differently from DuckDB, rewritten to
DuckDB's meaning or refused before anything runs (issue 18). Each was measured on the three engines; the
differential corpus (tests/test_engine_meaning.py) checks every row of this table:

DuckDB computes → PostgreSQL / Spark SQL:

- ``a / b``: always a double; ``x / 0`` is ±inf (NaN for 0/0) → both error on 0: written as a CASE.
- ``a % b``, ``a // b`` by zero: NULL → both error: ``b`` becomes ``nullif(b, 0)``.
- ``cast(<double> as int)`` rounds half to even, ``cast(<decimal> as int)`` half away → PostgreSQL the same;
  Spark truncates: ``bround`` / ``round`` first.
- ``round(<double>)``: half away from zero → PostgreSQL half to even: ``kiban.round`` (through numeric, keeping
  the argument's type); Spark native.
- ``dayofweek(d)``, ``weekday(d)``, ``date_part('dow', d)``: Sunday 0 … Saturday 6 → ``extract(dow …)``; Spark
  counts 1 … 7 (and its weekday starts on Monday): ``dayofweek(d) - 1``.
- ``date_diff('month', a, b)``: boundaries crossed (Jan 31 → Feb 1 is 1) → PostgreSQL by SQLGlot (hours on
  instants: ``kiban.date_trunc``); Spark counts whole units: both sides truncated first.
- ``date_diff('week', …)`` and smaller-than-second units → refused.
- ``cast(<double> as varchar)``: ``2.0``, ``nan`` → PostgreSQL ``2``, ``NaN``: ``kiban.duck_text(x)``.
- ``date_trunc(u, <date>)``: a timestamp → PostgreSQL a timestamptz: ``kiban.date_trunc`` (overloads by type).
- ``contains``, ``ends_with``, ``prefix``/``suffix``, ``quarter`` → missing on PostgreSQL: ``strpos(…) > 0``,
  ``right(…)``/``left(…)``, ``extract(quarter …)``.
- text order: bytes (``'B' < 'a'``) → PostgreSQL follows the database's collation: lake text columns, casts to
  text and text literals compared with text get ``COLLATE "C"``; ``upper``/``lower`` use ``COLLATE "default"``
  (the C collation maps ASCII only). Spark is native.
- ``PIVOT`` → refused (DuckDB's PIVOT finds its columns from the data).

Types come from SQLGlot's annotation of the model alone (literals, casts, functions, ``/``); a bare column's
type is not known here, so ``cast(col as int)`` of a double *column* keeps Spark's truncation — cast it
through ``round()`` explicitly (documented in docs/scale-out.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from kiban.engines import meaning_postgres
from kiban.engines.refusal import Refused

INT_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINT", "UBIGINT")
FLOAT_TYPES = ("FLOAT", "DOUBLE")
SAME_TYPE = {"TIMESTAMPNTZ": "TIMESTAMP", "TIMESTAMPLTZ": "TIMESTAMPTZ", "TEXT": "VARCHAR"}  # SQLGlot's synonyms
DIFF_UNITS = ("YEAR", "QUARTER", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND")


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
    name = kind.this.name if kind is not None and hasattr(kind.this, "name") else "UNKNOWN"
    return SAME_TYPE.get(name, name)


def _named(datatype: Any) -> str:
    """The name of a DataType node (``INT``, ``VARCHAR``)."""
    name = datatype.this.name if hasattr(datatype.this, "name") else str(datatype.this).upper()
    return SAME_TYPE.get(name, name)


def rewrite_tree(tree: Any, target: str, columns: Mapping[str, str] | None = None) -> Any:
    """Every node rewritten, children before their parents (so a rewrite copies rewritten children).

    ``columns``: lower-case column name → DuckDB type of the tables the model reads (from the engine's
    catalog), so that ``cast(amount as int)`` knows ``amount`` is a decimal."""
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    tree = annotate(tree)
    for column in tree.find_all(exp.Column):
        kind = (columns or {}).get(column.name.lower())
        if kind and not column.table.startswith("__"):
            with contextlib.suppress(SqlglotError, ValueError):
                column.type = exp.DataType.build(kind, dialect="duckdb")
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
    if pg:  # the classes the generated differential test found (engines.meaning_postgres)
        new = meaning_postgres.rewrite(node)
        if new is not node:
            return new
        new = meaning_postgres.byte_order(node)
        if new is not node:
            return new
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
    if not pg and isinstance(node, exp.Cast) and _named(node.to) == "VARCHAR":  # the full corpus on Spark (#18)
        inner = _type(node.this)
        if inner in FLOAT_TYPES:  # DuckDB 1e-09, Spark 1.0E-9
            raise Refused("cast(<double> as varchar)", "Spark writes doubles as text differently (1.0E-9 for "
                          "1e-09): round or format the number first (format('%.6f', x), printf)", node)
        if inner == "TIMESTAMPTZ":  # DuckDB 2024-03-10 01:59:00-08, Spark without the offset
            raise Refused("cast(<timestamptz> as varchar)", "Spark leaves the UTC offset out: write the text "
                          "you mean with strftime(t, '%Y-%m-%d %H:%M:%S')", node)
    if not pg and isinstance(node, exp.Avg) and _type(node.this) == "DECIMAL":  # DuckDB: a double
        return exp.Avg(this=exp.Cast(this=node.this.copy(), to=exp.DataType.build("double")))
    if not pg and isinstance(node, (exp.DateTrunc, exp.TimestampTrunc)) and _type(node.this) in ("DATE", "TIMESTAMP"):
        ntz = exp.DataType(this=exp.DataType.Type.USERDEFINED, kind="TIMESTAMP_NTZ")  # Spark would give an instant
        return exp.Cast(this=node.copy(), to=ntz)
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
    if not pg and isinstance(node, exp.Anonymous) and node.name.lower() in ("prefix", "suffix") \
            and len(node.expressions) == 2:  # DuckDB's names; Spark's are startswith/endswith
        name = "startswith" if node.name.lower() == "prefix" else "endswith"
        return exp.Anonymous(this=name, expressions=[e.copy() for e in node.expressions])
    if not pg and isinstance(node, (exp.Like, exp.ILike)) and not isinstance(node.parent, exp.Escape) \
            and isinstance(node.expression, exp.Literal) and "\\" in node.expression.name:
        raise Refused("LIKE with a backslash in its pattern", "DuckDB's LIKE has no escape character and Spark's "
                      "is the backslash: write the pattern without one, or say ESCAPE '!' and escape with that",
                      node)
    if not pg and isinstance(node, exp.RegexpReplace):
        flags = node.args.get("modifiers")
        if not (isinstance(flags, exp.Literal) and "g" in flags.name):  # DuckDB replaces the first match only
            raise Refused("regexp_replace(…) without the 'g' option",
                          "Spark replaces every match: add 'g' as the fourth argument if that is what you mean", node)
        return exp.RegexpReplace(this=node.this.copy(), expression=node.expression.copy(),
                                 replacement=node.args["replacement"].copy())
    if (pg and isinstance(node, (exp.Contains, exp.EndsWith))) or (
            pg and isinstance(node, exp.Anonymous) and len(node.expressions) == 2
            and node.name.lower() in ("suffix", "prefix")):  # DuckDB's, which PostgreSQL lacks
        text, part = (e.copy() for e in ((node.this, node.expression) if not isinstance(node, exp.Anonymous)
                                         else node.expressions))
        if isinstance(node, exp.Contains):
            return exp.GT(this=exp.Anonymous(this="strpos", expressions=[text, part]), expression=exp.Literal.number(0))
        side = "left" if isinstance(node, exp.Anonymous) and node.name.lower() == "prefix" else "right"
        return exp.EQ(this=exp.Anonymous(this=side, expressions=[text, exp.Length(this=part.copy())]),
                      expression=part)
    if (pg and isinstance(node, exp.Quarter)) or (pg and isinstance(node, exp.Anonymous)
                                                and node.name.lower() == "quarter" and len(node.expressions) == 1):
        value = node.this if isinstance(node, exp.Quarter) else node.expressions[0]
        return exp.Cast(this=exp.Extract(this=exp.var("quarter"), expression=value.copy()),
                        to=exp.DataType.build("bigint"))
    if pg and isinstance(node, (exp.DateTrunc, exp.TimestampTrunc)):
        unit = node.args.get("unit")
        unit_text = exp.Literal.string(unit.name.lower()) if unit is not None else exp.Literal.string("day")
        return _kiban_function("date_trunc", unit_text, node.this.copy())
    if pg and isinstance(node, (exp.Upper, exp.Lower, exp.Initcap)):  # lake text is COLLATE "C", whose case
        collated = exp.Collate(this=node.this.copy(), expression=exp.Identifier(this="default", quoted=True))
        return exp.Collate(this=type(node)(this=collated),  # mapping knows ASCII only: the database's knows é → É
                           expression=exp.Identifier(this="C", quoted=True))
    if pg and isinstance(node, exp.Literal) and node.is_string and (_collatable(node)
                                                                  or meaning_postgres.text_value(node)):
        return exp.Collate(this=node.copy(), expression=exp.Identifier(this="C", quoted=True))
    if pg and isinstance(node, exp.Cast) and _named(node.to) == "VARCHAR" \
            and not isinstance(node.parent, exp.Collate):  # DuckDB's text of a double; byte order
        if isinstance(node.this, exp.Literal) and node.this.is_string:
            return exp.Collate(this=node.copy(), expression=exp.Identifier(this="C", quoted=True))
        return exp.Collate(this=_kiban_function("duck_text", node.this.copy()),
                           expression=exp.Identifier(this="C", quoted=True))
    return node


# Functions kiban creates in the warehouse's `kiban` schema (PostgresEngine.prepare): PostgreSQL picks the
# overload by the argument's type when the model runs, which is exactly what a transpiler that does not know a
# column's type cannot do. Each keeps DuckDB's result for every type.
POSTGRES_FUNCTIONS = (
    # DuckDB writes a double as the shortest text that reads back the same, and integral values with ".0"
    """create or replace function kiban.duck_text(x double precision) returns text language sql immutable
       parallel safe as $$ select case when x = 'NaN'::float8 then 'nan' when x = 'Infinity'::float8 then 'inf'
       when x = '-Infinity'::float8 then '-inf' when x::text ~ '^-?[0-9]+$' then x::text || '.0'
       else x::text end $$""",
    """create or replace function kiban.duck_text(x real) returns text language sql immutable parallel safe
       as $$ select kiban.duck_text(x::float8) $$""",
    """create or replace function kiban.duck_text(x anyelement) returns text language sql immutable parallel safe
       as $$ select x::text $$""",
    *(f"""create or replace function kiban.duck_text(x {kind}) returns text language sql immutable parallel safe
        as $$ select x::text $$""" for kind in ("smallint", "integer", "bigint", "numeric", "text", "boolean",
                                                "date", "timestamp", "timestamptz", "time", "interval")),
    # DuckDB truncates a date to a timestamp (PostgreSQL: a timestamptz at the session's midnight)
    """create or replace function kiban.date_trunc(unit text, x date) returns timestamp language sql immutable
       parallel safe as $$ select date_trunc(unit, x::timestamp) $$""",
    """create or replace function kiban.date_trunc(unit text, x timestamp) returns timestamp language sql
       immutable parallel safe as $$ select date_trunc(unit, x) $$""",
    """create or replace function kiban.date_trunc(unit text, x timestamptz) returns timestamptz language sql
       stable parallel safe as $$ select date_trunc(unit, x) $$""",
    *meaning_postgres.FUNCTIONS,
)


def _kiban_function(name: str, *args: Any) -> Any:
    from sqlglot import exp

    return exp.Dot(this=exp.to_identifier("kiban"), expression=exp.Anonymous(this=name, expressions=list(args)))


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
    if target == "postgres":  # IEEE: the sign of the zero counts (5 / -0.0 is -inf); NaN / 0 is NaN (PostgreSQL's
        # NaN is greater than every number, so `a > 0` cannot tell it)
        negative_zero = exp.EQ(this=exp.Cast(this=b.copy(), to=exp.DataType.build("text")),
                               expression=exp.Literal.string("-0"))
        nothing = exp.or_(exp.EQ(this=a.copy(), expression=zero.copy()),
                          exp.EQ(this=a.copy(), expression=special("NaN")))
        by_zero = exp.Case(ifs=[exp.If(this=exp.Is(this=a.copy(), expression=exp.Null()), true=exp.Null()),
                                exp.If(this=nothing, true=special("NaN")),
                                exp.If(this=exp.EQ(this=exp.paren(exp.GT(this=a.copy(), expression=zero.copy())),
                                                   expression=exp.paren(negative_zero)),
                                       true=special("-Infinity"))],
                           default=special("Infinity"))
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=b.copy(), expression=zero), true=by_zero)],
                        default=exp.Div(this=a, expression=b, typed=True))
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
    if isinstance(node, exp.Anonymous) and node.name.lower() in ("date_part", "datepart") \
            and len(node.expressions) == 2:
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
        if unit not in ("HOUR", "MINUTE", "SECOND"):  # SQLGlot writes boundary arithmetic (date_trunc, then the
            return exp.Cast(this=node.copy(), to=exp.DataType.build("bigint"))  # difference); DuckDB: a BIGINT
        # instants stay instants (SQLGlot would cast to timestamp: wall-clock hours across a DST change)
        seconds = {"HOUR": 3600, "MINUTE": 60, "SECOND": 1}[unit]
        later, earlier = (_kiban_function("date_trunc", exp.Literal.string(unit.lower()), side.copy())
                          for side in (node.this, node.expression))
        elapsed = exp.Extract(this=exp.var("epoch"), expression=exp.Sub(this=later, expression=earlier))
        return exp.Cast(this=exp.Div(this=elapsed, expression=exp.Literal.number(seconds), typed=True),
                        to=exp.DataType.build("bigint"))
    if unit in ("HOUR", "MINUTE", "SECOND"):  # boundaries of instants: whole-hour zones' local boundaries
        seconds = {"HOUR": 3600, "MINUTE": 60, "SECOND": 1}[unit]
        kinds = {_type(node.this), _type(node.expression)}

        def epoch(side: Any) -> Any:
            if kinds <= {"TIMESTAMP", "DATE"}:  # wall-clock times: their difference, never shifted by DST
                side = exp.Cast(this=exp.DPipe(this=exp.Cast(this=side.copy(), to=exp.DataType.build("string")),
                                               expression=exp.Literal.string("Z")),
                                to=exp.DataType.build("timestamp"))
            else:
                side = exp.Cast(this=side.copy(), to=exp.DataType.build("timestamp"))
            seconds_of = exp.Anonymous(this="unix_seconds", expressions=[side])
            return exp.Floor(this=exp.Div(this=seconds_of, expression=exp.Literal.number(seconds), typed=True))

        return exp.Cast(this=exp.Sub(this=epoch(node.this), expression=epoch(node.expression)),
                        to=exp.DataType.build("bigint"))
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
    return all(_type(o) in ("VARCHAR", "CHAR") for o in others)
