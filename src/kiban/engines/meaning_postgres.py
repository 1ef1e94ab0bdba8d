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
- ``LIKE`` without ``ESCAPE``: DuckDB has no escape character, PostgreSQL the backslash (``'a_b' like 'a\\_b'``
  true) → ``ESCAPE ''``.
- regular expressions: DuckDB's are RE2 (``.`` never matches a newline; ``\\w``, ``\\d``, ``\\s`` and POSIX classes
  are ASCII; ``\\b`` is a word boundary, PostgreSQL's a backspace; ``\\0`` in a replacement is the whole match)
  → a literal pattern is rewritten to the ARE that matches the same text; what has none is refused.
- ``split_part(s, '', k)``: DuckDB's k-th character (PostgreSQL: the whole string); part 0 is ''.
- ``unicode('')``: DuckDB -1, PostgreSQL's ``ascii('')`` 0.
- an instant ± days/months landing in the repeated hour of a DST change: DuckDB keeps the instant's UTC offset,
  PostgreSQL takes standard time → ``kiban.shift``.
- ``strptime(s, fmt)`` and ``epoch_ms(n)``: DuckDB a naive timestamp, PostgreSQL's ``to_timestamp`` an instant
  (read through the session's zone: 02:30 in a DST gap becomes 03:30) → read at ``+00``, back to UTC wall time.
- ``generate_series``/``range`` over dates: DuckDB naive timestamps (PostgreSQL instants) → ``kiban.naive``;
  ``range``'s exclusive end: SQLGlot's ``end - 1`` counts down wrongly and cuts a 12-hour date range → one least
  unit short on the step's side; as a list value (PostgreSQL: rows) → refused.
- ``list[k]`` with a negative ``k`` (DuckDB: from the end; PostgreSQL NULL) → ``kiban.element``.
"""

from __future__ import annotations

from typing import Any

from kiban.engines.meaning_regex import like, regex, regexp_extract, replacement, wants_dot_all
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
    # DuckDB's list[k]: from the end for a negative k, NULL past either end
    """create or replace function kiban.element(a anyarray, k bigint) returns anyelement language sql immutable
       parallel safe as $$ select case when k is null or k = 0 or abs(k) > cardinality(a) then null
       when k < 0 then a[(cardinality(a) + 1 + k)::int] else a[k::int] end $$""",
    # an instant plus days or months whose wall time falls in the repeated hour of a DST change: DuckDB keeps the
    # instant's own UTC offset, PostgreSQL takes the later one (standard time)
    """create or replace function kiban.shift(x timestamptz, i interval) returns timestamptz language sql stable
       parallel safe as $$ select case when (r - interval '1 hour')::timestamp = r::timestamp
       and extract(timezone from x) = extract(timezone from r - interval '1 hour') then r - interval '1 hour'
       else r end from (select x + i as r) v $$""",
    """create or replace function kiban.shift(x timestamp, i interval) returns timestamp language sql immutable
       parallel safe as $$ select x + i $$""",
    """create or replace function kiban.shift(x date, i interval) returns timestamp language sql immutable
       parallel safe as $$ select x + i $$""",
    # DuckDB's generate_series/range over dates gives naive timestamps (PostgreSQL's date arguments: instants)
    """create or replace function kiban.naive(x date) returns timestamp language sql immutable parallel safe
       as $$ select x::timestamp $$""",
    """create or replace function kiban.naive(x anyelement) returns anyelement language sql immutable
       parallel safe as $$ select x $$""",
    # DuckDB's round keeps its argument's type; half away from zero (PostgreSQL's numeric round) for every type
    *(f"""create or replace function kiban.round(x {kind}, n integer) returns {kind} language sql immutable
        parallel safe as $$ select case when n < 0 and x in ('Infinity', '-Infinity', 'NaN') then 0
        when (x < 0 or x::text = '-0') and round(x::numeric, n) = 0 then '-0'::{kind}
        else round(x::numeric, n)::{kind} end $$""" for kind in ("double precision", "real")),  # DuckDB: 0, -0.0
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
            if out and not literal and not out[-1].endswith('"'):  # YY then YYYY would read as YYYY then YY
                out.append('""')
            flush()
            out.append(STRFTIME[spec])
        else:
            return None
        i += 1 + len(spec)
    flush()
    return "".join(out)


def _calendar(node: Any) -> bool:
    """An interval literal of days, weeks, months, quarters or years: wall-clock arithmetic on an instant."""
    from sqlglot import exp

    if not isinstance(node, exp.Interval):
        return False
    unit = node.args.get("unit")
    text = (unit.name if unit is not None else node.this.name if isinstance(node.this, exp.Literal) else "").upper()
    return any(part in text for part in ("DAY", "WEEK", "MONTH", "QUARTER", "YEAR"))


def _split_part(node: Any) -> Any:
    """``split_part(s, sep, k)``: DuckDB splits on '' into characters and answers '' for part 0 (PostgreSQL:
    the whole string; an error)."""
    from sqlglot import exp

    text, sep, index = node.this, node.args["delimiter"], node.args["part_index"]
    return exp.Case(ifs=[exp.If(this=exp.EQ(this=sep.copy(), expression=exp.Literal.string("")),
                                true=_kiban("substring", text.copy(), index.copy(), exp.Literal.number(1))),
                         exp.If(this=exp.EQ(this=index.copy(), expression=exp.Literal.number(0)),  # '', or NULL
                                true=exp.DPipe(this=_kiban("substring", text.copy(), exp.Literal.number(1),
                                                           exp.Literal.number(0)),
                                               expression=exp.Anonymous(this="left", expressions=[
                                                   sep.copy(), exp.Literal.number(0)])))],
                    default=node.copy())


def _negative(value: Any) -> bool:
    from sqlglot import exp

    return isinstance(value, exp.Neg) or (isinstance(value, exp.Literal) and value.name.startswith("-"))


def _series(node: Any) -> Any:
    """``generate_series`` / ``range``: a set of rows only where PostgreSQL has one (FROM, unnest); dates give
    DuckDB's naive timestamps (PostgreSQL: instants); an exclusive end (``range``) is one step's least unit
    before the end, on the step's side (SQLGlot's ``end - 1`` counts down wrongly and cuts a date range at the
    day)."""
    from sqlglot import exp

    if not isinstance(node.parent, (exp.Table, exp.Explode, exp.Unnest, exp.Cast)):
        raise Refused("generate_series/range as a list value", "PostgreSQL's is a set of rows: select from it "
                      "(from range(…) r(x)) or unnest it", node)
    step = node.args.get("step")
    timed = isinstance(step, exp.Interval)
    series = node.copy()
    if timed:
        for side in ("start", "end"):
            series.set(side, _kiban("naive", node.args[side].copy()))
    if node.args.get("is_end_exclusive"):
        if step is not None and not isinstance(step, (exp.Literal, exp.Neg, exp.Interval)):
            raise Refused("range(a, b, <a step that is not a literal>)", "write the step as a literal, or use "
                          "generate_series (its end is inclusive)", node)
        down = step is not None and (_negative(step) or (timed and _negative(step.this)))
        least = exp.Interval(this=exp.Literal.string("1"), unit=exp.var("microsecond")) if timed \
            else exp.Literal.number(1)
        end = series.args["end"].copy()
        series.set("end", exp.Add(this=end, expression=least) if down else exp.Sub(this=end, expression=least))
        series.set("is_end_exclusive", False)
    return series


def _element(node: Any) -> Any:
    """``list[i]``: DuckDB counts a negative index from the end and answers NULL past either end (PostgreSQL:
    NULL for a negative index, an error past the integers) → ``kiban.element``; a slice with a negative or
    computed bound is refused."""
    from sqlglot import exp

    if len(node.expressions) != 1:
        return node
    index = node.expressions[0]
    if isinstance(index, exp.Slice):
        for bound in (index.this, index.expression):
            if bound is not None and (_negative(bound) or not isinstance(bound, exp.Literal)):
                raise Refused("a list slice [a:b] with a negative or computed bound", "PostgreSQL counts slices "
                              "from the start only: write the bounds as positive literals", node)
        return node
    if isinstance(index, exp.Literal) and index.is_string:
        return node  # a struct's or map's key
    # SQLGlot's parser keeps an index it types as an integer 0-based (apply_index_offset): a literal k - 1, or
    # `x + -1`; an index of unknown type (a column) stays as written. Read DuckDB's k back from that shape (types
    # annotated later, or rewritten children, would say otherwise).
    k: Any
    if isinstance(index, exp.Literal) and index.is_int:
        k = exp.Literal.number(int(index.name) + 1)
    elif isinstance(index, exp.Neg) and isinstance(index.this, exp.Literal) and index.this.is_int:
        k = exp.Literal.number(1 - int(index.this.name))
    elif isinstance(index, exp.Add) and index.expression.sql() in ("-1", "- 1"):
        k = index.this.copy()
    else:
        k = index.copy()
    return _kiban("element", node.this.copy(), k)


def text_value(node: Any) -> bool:
    """A text literal that is a value of its own, not something DuckDB would read as another type: a select
    item, a VALUES row's field, a branch of a CASE whose every branch is a text literal (or NULL). Without
    ``COLLATE "C"`` it takes the database's collation, and ordering or comparing it in the model (or a model
    reading it) would follow that (``'a'`` < ``'B'`` in en-US) where DuckDB orders bytes."""
    from sqlglot import exp

    if not (isinstance(node, exp.Literal) and node.is_string):
        return False
    parent = node.parent
    item = parent if isinstance(parent, exp.Alias) else node
    select = item.parent
    if isinstance(select, exp.Select) and item.arg_key == "expressions":
        if not isinstance(select.parent, exp.SetOperation):
            return True  # in a UNION, only when every branch's item is text too (`select d union select '…'`
        return _column_of_text(select.parent, select.expressions.index(item))  # is a date in DuckDB)
    if isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Values):  # likewise every row's field
        index = parent.expressions.index(node)
        return all(isinstance(row, exp.Tuple) and len(row.expressions) > index and _text(row.expressions[index])
                   for row in parent.parent.expressions)
    case = parent.parent if isinstance(parent, exp.If) and node.arg_key == "true" else parent
    if isinstance(case, exp.Case) and (node.arg_key == "default" or isinstance(parent, exp.If)):
        branches = [i.args.get("true") for i in case.args.get("ifs") or []] + [case.args.get("default")]
        return all(b is None or isinstance(b, exp.Null) or (isinstance(b, exp.Literal) and b.is_string)
                   for b in branches)
    return False


def _text(value: Any) -> bool:
    from sqlglot import exp

    value = value.this if isinstance(value, exp.Alias) else value
    value = value.this if isinstance(value, exp.Collate) else value  # a sibling already rewritten
    return isinstance(value, exp.Null) or (isinstance(value, exp.Literal) and value.is_string)


def _column_of_text(union: Any, index: int) -> bool:
    """Whether the ``index``-th item of every SELECT of a set operation is a text literal (or NULL)."""
    from sqlglot import exp

    while isinstance(union.parent, exp.SetOperation):
        union = union.parent
    selects = [union] if isinstance(union, exp.Select) else list(union.find_all(exp.Select))
    return all(len(q.expressions) > index and _text(q.expressions[index]) for q in selects
               if isinstance(q.parent, exp.SetOperation) or q is union)


def _computed_text(node: Any) -> bool:
    """Text a function computes (``to_char``, ``lpad('aB', 5)``, ``kiban.substring``): typed text by SQLGlot, and
    neither a column (lake and published text is ``COLLATE "C"``) nor a literal (engines.meaning) nor collated."""
    from sqlglot import exp

    kind = getattr(node, "type", None)
    name = kind.this.name if kind is not None and hasattr(kind.this, "name") else ""
    return name in ("VARCHAR", "TEXT", "CHAR") and isinstance(node, (exp.Func, exp.Dot, exp.DPipe)) \
        and not isinstance(node, (exp.Collate, exp.Cast))


def byte_order(node: Any) -> Any:
    """``node`` with the computed text it compares or orders in ``COLLATE "C"``: such text takes the database's
    collation (``greatest(dayname(d), 'aB')`` is ``Tuesday`` in en-US, ``aB`` in DuckDB's byte order)."""
    from sqlglot import exp

    keys = {exp.EQ: ("this", "expression"), exp.NEQ: ("this", "expression"), exp.LT: ("this", "expression"),
            exp.LTE: ("this", "expression"), exp.GT: ("this", "expression"), exp.GTE: ("this", "expression"),
            exp.Ordered: ("this",), exp.Min: ("this",), exp.Max: ("this",), exp.Between: ("this", "low", "high"),
            exp.Alias: ("this",)}  # a select item: its column, ordered or compared by name, later
    names = keys.get(type(node))
    lists = isinstance(node, (exp.Greatest, exp.Least)) or (  # DISTINCT ON's list must match the ORDER BY keys
        isinstance(node, exp.Tuple) and isinstance(node.parent, exp.Distinct))
    if names is None and not lists:
        return node
    changed = node
    for key in names or (("expressions",) if isinstance(node, exp.Tuple) else ("this", "expressions")):
        value = node.args.get(key)
        for child in (value if isinstance(value, list) else [value]):
            if child is not None and _computed_text(child):
                collated = exp.Collate(this=child.copy(), expression=exp.Identifier(this="C", quoted=True))
                collated.type = child.type
                if changed is node:
                    changed = node.copy()
                    changed.type = node.type
                target = changed.args.get(key)
                if isinstance(target, list):
                    target[value.index(child)].replace(collated)
                else:
                    target.replace(collated)
    return changed


def rewrite(node: Any) -> Any:
    """``node`` as PostgreSQL must read it to compute DuckDB's answer (the classes in the module docstring);
    ``node`` itself when none applies. Raises ``engines.meaning.Refused``."""
    from sqlglot import exp

    if isinstance(node, exp.RegexpExtract):
        return regexp_extract(node)
    if isinstance(node, (exp.Add, exp.Sub)) and _calendar(node.expression) \
            and not isinstance(node.this, exp.Interval):  # t ± interval 'n day|month|year'
        step = node.expression.copy() if isinstance(node, exp.Add) else exp.Neg(this=node.expression.copy())
        return _kiban("shift", node.this.copy(), step)
    if isinstance(node, exp.Add) and _calendar(node.this) and not isinstance(node.expression, exp.Interval):
        return _kiban("shift", node.expression.copy(), node.this.copy())
    if isinstance(node, exp.GenerateSeries):
        return _series(node)
    if isinstance(node, exp.Explode) and isinstance(node.this, exp.GenerateSeries):
        return node.this.copy()  # PostgreSQL's generate_series is already a set of rows (_series wrote it)
    if isinstance(node, exp.Bracket):
        return _element(node)
    if isinstance(node, exp.StrToTime):  # DuckDB: a naive timestamp read as written; to_timestamp: an instant
        fmt = node.args.get("format")  # read through the session's zone (02:30 in a DST gap becomes 03:30)
        pattern = to_char_pattern(fmt.name) if isinstance(fmt, exp.Literal) and fmt.is_string else None
        if pattern is None:
            raise Refused("strptime(s, <this format>)", "write the format as a text literal with the specifiers "
                          f"{', '.join('%' + k for k in STRFTIME)}", node)
        read = exp.Anonymous(this="to_timestamp", expressions=[
            exp.DPipe(this=node.this.copy(), expression=exp.Literal.string(" +00")),
            exp.Literal.string(pattern + " TZH")])
        return exp.AtTimeZone(this=read, zone=exp.Literal.string("UTC"))
    if isinstance(node, exp.UnixToTime) and isinstance(node.args.get("scale"), exp.Literal) \
            and node.args["scale"].name in ("3", "6"):  # epoch_ms(n), epoch_us(n): DuckDB a naive timestamp
        unit = "millisecond" if node.args["scale"].name == "3" else "microsecond"
        epoch = exp.Cast(this=exp.Literal.string("epoch"), to=exp.DataType.build("timestamp"))
        return exp.Add(this=epoch, expression=exp.Mul(this=exp.paren(node.this.copy()),
                                                      expression=exp.Interval(this=exp.Literal.string("1"),
                                                                              unit=exp.var(unit))))
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
    if isinstance(node, (exp.Like, exp.ILike)):
        return like(node)
    if isinstance(node, exp.SimilarTo):
        pattern = regex(node.expression, node)
        lead = "(?i)" if isinstance(pattern, exp.Literal) and pattern.name.startswith("(?i)") else ""
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            anchored: Any = exp.Literal.string(f"{lead}^(?:{pattern.this[len(lead):]})$")
        else:
            anchored = exp.DPipe(this=exp.DPipe(this=exp.Literal.string("^(?:"), expression=pattern.copy()),
                                 expression=exp.Literal.string(")$"))
        matched = exp.RegexpLike(this=node.this.copy(), expression=anchored)
        return exp.Not(this=matched) if node.args.get("negate") else matched
    if isinstance(node, (exp.RegexpLike, exp.RegexpFullMatch)):
        matching = node.copy()
        options = node.args.get("flag") or node.args.get("options")
        matching.set("expression", regex(node.expression, node, wants_dot_all(options)))
        return matching
    if isinstance(node, exp.RegexpReplace):
        replacing = node.copy()
        replacing.set("expression", regex(node.expression, node, wants_dot_all(node.args.get("modifiers"))))
        written = node.args.get("replacement")
        if isinstance(written, exp.Literal) and written.is_string:  # RE2's \0 is PostgreSQL's \&
            replacing.set("replacement", exp.Literal.string(replacement(written.name)))
        return replacing
    if isinstance(node, exp.SplitPart):
        return _split_part(node)
    if isinstance(node, exp.Unicode):  # DuckDB: -1 for '' (PostgreSQL's ascii: 0)
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=node.this.copy(), expression=exp.Literal.string("")),
                                    true=exp.Literal.number(-1))],
                        default=exp.Anonymous(this="ascii", expressions=[node.this.copy()]))
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
