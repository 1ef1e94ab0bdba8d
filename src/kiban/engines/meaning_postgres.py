"""DuckDB's meaning on PostgreSQL, part two: the classes a generated differential test found (wave 10).

Each rule below gave silently different data before (the example in its comment); each is either rewritten to
DuckDB's meaning or refused at load by ``engines.meaning.rewrite`` (which calls :func:`rewrite`):

- ``substring(s, start[, n])`` with a negative start or length: DuckDB counts from the end (``substr('hello',
  -2)`` is ``lo``), PostgreSQL from before the start (``hello``) → ``kiban.substring`` (DuckDB's rules, as
  measured on columns: DuckDB 1.5.5 folds a constant ``substring('hello', -7, 1)`` to ``h`` but gives '' for
  the same values read from a table).
- ``a ILIKE p`` folds ASCII only under ``COLLATE "C"`` (``'Été' ilike 'é%'`` false) → ``lower(a) LIKE lower(p)``
  under the database's collation, as ``upper``/``lower`` already are.
- ``strftime(t, fmt)``: SQLGlot writes ``to_char`` and passes what it does not know through as text
  (``%W`` → ``%5``), maps ``%U`` to ISO weeks and reads literal text as patterns (``'Day %d'``) → kiban writes
  the ``to_char`` pattern itself, literal text quoted; a specifier with no exact pattern is refused.
- date parts (``year(d)``, ``extract(second from t)``, ``date_part('week', d)``…): PostgreSQL gives numeric /
  double, and fractional seconds (``59.75`` where DuckDB says ``59``) → ``cast(trunc(extract(…)) as bigint)``;
  ``epoch``/``julian`` a double.
- ``avg``, ``stddev``, ``variance``, ``corr``, ``covar_*`` give numeric on integers and decimals (DuckDB a double)
  → cast to ``double precision``.
- ``round(x[, n])`` keeps DuckDB's type (a double stays a double, an integer an integer) → ``kiban.round``
  (overloads by type, half away from zero through numeric).
- ``a // b``: DuckDB divides integers to an integer and doubles/decimals to a double (``2.5 // 1`` is 2.5), NULL by
  zero; SQLGlot's ``div()`` gives numeric and truncates decimals → ``kiban.idiv`` (overloads by type).
- ``format(fmt, …)``: DuckDB's ``{}`` placeholders, PostgreSQL's ``%s`` (``format('{}', 1)`` is ``{}``) → refused.
- ``s SIMILAR TO p``: DuckDB a regex full match, PostgreSQL SQL's own pattern language → ``s ~ '^(?:p)$'``.
- ``regexp_extract(s, p, g)``: NULL for a NULL ``s`` (was ''), '' for a group the pattern lacks (was the whole
  match).
- ``1e3``, ``0.5e0``: a double in DuckDB, numeric in PostgreSQL → cast to ``double precision``.
- ``sign(x)``: DuckDB a small integer for every type, PostgreSQL numeric/double (``1.0``) → ``cast(… as smallint)``.
"""

from __future__ import annotations

from typing import Any

from kiban.engines.refusal import Refused

# DuckDB's strftime specifiers with an exact to_char pattern (checked by tests/test_engine_generated.py)
STRFTIME = {
    "a": "Dy", "A": "FMDay", "b": "Mon", "B": "FMMonth", "d": "DD", "-d": "FMDD", "m": "MM", "-m": "FMMM",
    "y": "YY", "Y": "YYYY", "H": "HH24", "-H": "FMHH24", "I": "HH12", "-I": "FMHH12", "p": "AM", "M": "MI",
    "-M": "FMMI", "S": "SS", "-S": "FMSS", "f": "US", "g": "MS", "j": "DDD", "-j": "FMDDD", "u": "ID",
    "V": "IW", "G": "IYYY",
}

# date parts PostgreSQL's extract knows by the same name and meaning; all but these two are whole numbers
PARTS = ("year", "month", "day", "hour", "minute", "second", "millisecond", "microsecond", "dow", "isodow",
         "doy", "week", "quarter", "isoyear", "decade", "century", "millennium", "epoch")
FRACTIONAL = ("epoch",)
SYNONYMS = {"years": "year", "months": "month", "days": "day", "hours": "hour", "minutes": "minute",
            "seconds": "second", "milliseconds": "millisecond", "microseconds": "microsecond", "weeks": "week",
            "dayofweek": "dow", "weekday": "dow", "dayofyear": "doy", "quarters": "quarter", "ms": "millisecond",
            "us": "microsecond", "y": "year", "d": "day", "m": "month", "h": "hour", "s": "second"}

FUNCTIONS = (
    # DuckDB's substring (measured on columns): characters [start, start + n) — [start + n, start) for a negative
    # n — of the string, where start is o - 1, len + o for a negative o, and -1 for o = 0; nothing is clamped
    # before the range is cut to the string
    """create or replace function kiban.substring(s text, o bigint, n bigint) returns text language sql immutable
       strict parallel safe as $$
       select case when lo >= hi then '' else substr(s, (lo + 1)::int, (hi - lo)::int) end
       from (select greatest(case when n >= 0 then st else st + n end, 0) as lo,
                    least(case when n >= 0 then st + n else st end, length(s)) as hi
             from (select case when o > 0 then o - 1 when o < 0 then length(s) + o else -1 end as st) x) y $$""",
    """create or replace function kiban.substring(s text, o bigint) returns text language sql immutable strict
       parallel safe as $$ select kiban.substring(s, o, 4294967295) $$""",
    # DuckDB's round keeps its argument's type; half away from zero (PostgreSQL's numeric round) for every type
    *(f"""create or replace function kiban.round(x {kind}, n integer) returns {kind} language sql immutable
        parallel safe as $$ select case when n < 0 and x in ('Infinity', '-Infinity', 'NaN') then 0
        else round(x::numeric, n)::{kind} end $$""" for kind in ("double precision", "real")),  # DuckDB: 0
    *(f"""create or replace function kiban.round(x {kind}, n integer) returns {kind} language sql immutable
        parallel safe as $$ select round(x::numeric, n)::{kind} $$""" for kind in ("smallint", "integer", "bigint")),
    """create or replace function kiban.round(x numeric, n integer) returns numeric language sql immutable
       parallel safe as $$ select round(x, n) $$""",
    # DuckDB's //: integers to an integer (toward zero), anything else a double division; NULL by zero
    *(f"""create or replace function kiban.idiv(a {kind}, b {kind}) returns {kind} language sql immutable
        parallel safe as $$ select case when b = 0 then null else a / b end $$"""
      for kind in ("smallint", "integer", "bigint")),
    *(f"""create or replace function kiban.idiv(a {kind}, b {kind}) returns double precision language sql
        immutable parallel safe as $$ select case when b = 0 then null else a::float8 / b::float8 end $$"""
      for kind in ("double precision", "numeric")),
)

_AVERAGES = ("Avg", "Stddev", "StddevSamp", "StddevPop", "Variance", "VariancePop", "Corr", "CovarSamp",
             "CovarPop")
_PART_NODES = {"Year": "year", "Month": "month", "Day": "day", "Hour": "hour", "Minute": "minute",
               "Second": "second", "Week": "week", "WeekOfYear": "week", "DayOfYear": "doy",
               "DayOfMonth": "day", "TimeToUnix": "epoch"}
_PART_FUNCTIONS = ("millisecond", "microsecond", "isoyear", "decade", "century", "millennium", "epoch")


def _kiban(name: str, *args: Any) -> Any:
    from sqlglot import exp

    return exp.Dot(this=exp.to_identifier("kiban"), expression=exp.Anonymous(this=name, expressions=list(args)))


def _average(node: Any) -> bool:
    """An aggregate whose PostgreSQL result is numeric where DuckDB's is a double (through FILTER and OVER)."""
    from sqlglot import exp

    while isinstance(node, (exp.Window, exp.Filter)):
        node = node.this
    return type(node).__name__ in _AVERAGES


def _part(node: Any) -> tuple[str, Any] | None:
    """(part, value) of a date-part node: ``year(d)``, ``extract(p from t)``, ``date_part('p', t)``, ``epoch(t)``."""
    from sqlglot import exp

    name = type(node).__name__
    if name in _PART_NODES and isinstance(node, exp.Func) and node.this is not None:
        return _PART_NODES[name], node.this
    if isinstance(node, exp.Extract) and isinstance(node.this, (exp.Var, exp.Identifier, exp.Literal)):
        return node.this.name.lower(), node.expression
    if isinstance(node, exp.Anonymous) and node.name.lower() in ("date_part", "datepart") \
            and len(node.expressions) == 2 and isinstance(node.expressions[0], exp.Literal) \
            and node.expressions[0].is_string:
        return node.expressions[0].name.lower(), node.expressions[1]
    if isinstance(node, exp.Anonymous) and node.name.lower() in _PART_FUNCTIONS and len(node.expressions) == 1:
        return node.name.lower(), node.expressions[0]
    return None


def to_char_pattern(fmt: str) -> str | None:
    """DuckDB's strftime format as a to_char pattern (literal text quoted); None when a specifier has none."""
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal).replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'"{text}"')
            literal.clear()

    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            literal.append(char)
            i += 1
            continue
        spec = fmt[i + 1:i + 3] if fmt[i + 1:i + 2] == "-" else fmt[i + 1:i + 2]
        if spec == "%":
            literal.append("%")
        elif spec in STRFTIME:
            flush()
            out.append(STRFTIME[spec])
        else:
            return None
        i += 1 + len(spec)
    flush()
    return "".join(out)


def _groups(pattern: str) -> int:
    """The capture groups of a regular expression: ``(`` not escaped, not in a class, not ``(?…``."""
    count, escaped, in_class = 0, False, False
    for k, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "(" and not in_class and pattern[k + 1:k + 2] != "?":
            count += 1
    return count


def _regexp_extract(node: Any) -> Any:
    """``regexp_extract(s, p, g)``: the group's text, '' when nothing matched (or the group does not exist), NULL
    when s or p is NULL. PostgreSQL's ``regexp_substr`` gives NULL for no match and the whole match for a group
    the pattern lacks."""
    from sqlglot import exp

    group = node.args.get("group") or exp.Literal.number(0)
    pattern = node.expression
    found: Any = exp.Coalesce(this=exp.Anonymous(this="regexp_substr", expressions=[
        node.this.copy(), pattern.copy(), exp.Literal.number(1), exp.Literal.number(1), exp.Literal.string(""),
        group.copy()]), expressions=[exp.Literal.string("")])
    if isinstance(pattern, exp.Literal) and pattern.is_string and isinstance(group, exp.Literal) \
            and group.is_int and int(group.name) > _groups(pattern.name):
        found = exp.Literal.string("")
    missing = exp.or_(exp.Is(this=node.this.copy(), expression=exp.Null()),
                      exp.Is(this=pattern.copy(), expression=exp.Null()))
    return exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=found)


def rewrite(node: Any) -> Any:
    """``node`` as PostgreSQL must read it to compute DuckDB's answer (the classes in the module docstring);
    ``node`` itself when none applies. Raises ``engines.meaning.Refused``."""
    from sqlglot import exp

    if isinstance(node, exp.RegexpExtract):
        return _regexp_extract(node)
    if isinstance(node, exp.Literal) and not node.is_string and "e" in node.name.lower():
        return exp.Cast(this=node.copy(), to=exp.DataType.build("double precision", dialect="postgres"))
    if isinstance(node, exp.Sign):  # DuckDB: a TINYINT for every argument; PostgreSQL: numeric or double
        return exp.Cast(this=node.copy(), to=exp.DataType.build("smallint"))
    if isinstance(node, exp.StrPosition) and node.args.get("position") is None:
        # SQLGlot writes POSITION(x IN y), whose grammar takes no COLLATE in y
        return exp.Anonymous(this="strpos", expressions=[node.this.copy(), node.args["substr"].copy()])
    if isinstance(node, exp.Substring):
        args = [node.this.copy(), node.args["start"].copy()]
        if node.args.get("length") is not None:
            args.append(node.args["length"].copy())
        return _kiban("substring", *args)
    if isinstance(node, exp.ILike):
        def folded(side: Any) -> Any:
            collated = exp.Collate(this=side.copy(), expression=exp.Identifier(this="default", quoted=True))
            return exp.Lower(this=collated)
        return exp.Like(this=folded(node.this), expression=folded(node.expression))
    if isinstance(node, exp.SimilarTo):
        pattern = node.expression
        anchored = (exp.Literal.string(f"^(?:{pattern.this})$") if isinstance(pattern, exp.Literal)
                    and pattern.is_string else exp.DPipe(this=exp.DPipe(this=exp.Literal.string("^(?:"),
                                                                          expression=pattern.copy()),
                                                         expression=exp.Literal.string(")$")))
        return exp.RegexpLike(this=node.this.copy(), expression=anchored)
    if isinstance(node, exp.TimeToStr):
        fmt = node.args.get("format")
        if not (isinstance(fmt, exp.Literal) and fmt.is_string):
            raise Refused("strftime(t, <a format that is not a text literal>)",
                          "write the format as a text literal, e.g. strftime(t, '%Y-%m-%d')", node)
        pattern = to_char_pattern(fmt.name)
        if pattern is None:
            raise Refused(f"strftime(t, '{fmt.name}')", "PostgreSQL's to_char has no exact equivalent of one of "
                          f"its specifiers; use {', '.join('%' + k for k in STRFTIME)} (and literal text)", node)
        return exp.Anonymous(this="to_char", expressions=[node.this.copy(), exp.Literal.string(pattern)])
    if isinstance(node, exp.Format):
        raise Refused("format(…)", "DuckDB's format uses {} placeholders and PostgreSQL's %s: build the text "
                      "with || and casts (or lpad/strftime)", node)
    if isinstance(node, exp.Round):
        decimals = node.args.get("decimals")
        return _kiban("round", node.this.copy(), decimals.copy() if decimals is not None else exp.Literal.number(0))
    if isinstance(node, exp.IntDiv):
        return _kiban("idiv", node.this.copy(), node.expression.copy())
    if _average(node) and not isinstance(node.parent, (exp.Window, exp.Filter)):
        return exp.Cast(this=node.copy(), to=exp.DataType.build("double precision", dialect="postgres"))
    found = _part(node)
    if found is not None:
        part, value = found
        part = SYNONYMS.get(part, part)
        if part not in PARTS:
            return node  # written through: PostgreSQL runs it or fails the build, never a different number
        extract = exp.Extract(this=exp.var(part), expression=value.copy())
        if part in FRACTIONAL:
            return exp.Cast(this=extract, to=exp.DataType.build("double precision", dialect="postgres"))
        return exp.Cast(this=exp.Anonymous(this="trunc", expressions=[extract]), to=exp.DataType.build("bigint"))
    return node
