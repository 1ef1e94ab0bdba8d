"""Models are written in DuckDB's SQL; other engines get them transpiled by SQLGlot.

A construct the target cannot express is an error that names the model and the construct — never a
silently different query. Unqualified table names are qualified with their layer on the way, because the
other engines have no DuckDB search path to find ``orders`` in ``warehouse``.

SQLGlot writes most of DuckDB's SQL correctly; the rewrites below fix what it writes through unchanged or
differently than DuckDB computes it (each was found running the example project on every engine):
| DuckDB | PostgreSQL | Spark SQL |
|---|---|---|
| ``QUALIFY`` | a subquery filtered on the window (``__kiban_qualify_N`` helper columns) | the same |
| ``GROUP BY ALL`` | the non-aggregate select items | native |
| ``dayname(d)`` (``Monday``) | ``to_char(d, 'FMDay')`` | ``date_format(d, 'EEEE')`` (not ``dayname``: ``Mon``) |
| ``isodow(d)`` | ``extract(isodow from d)`` | ``weekday(d) + 1`` |
| ``hour(t)``, ``minute(t)`` | ``extract(hour from t)`` … | native |
| ``regexp_full_match(s, p)`` | ``s ~ '^(?:p)$'`` | ``s rlike '^(?:p)$'`` |
| ``regexp_extract(s, p, g)`` | ``coalesce(regexp_substr(s, p, 1, 1, '', g), '')`` (engines.meaning_postgres) | native |
| ``timezone(z, timestamptz)`` | native | ``convert_timezone(S, z, cast(t as timestamp_ntz))`` (a local time) |
| ``timezone(z, timestamp)`` | native | ``cast(convert_timezone(z, S, t) as timestamp)`` (an instant) |

(S: the session's time zone — the project's — through which Spark reads and writes instants.)
| ``round(x, n)`` | ``kiban.round(x, n)`` (engines.meaning_postgres) | native |
| ``cast(unnest(generate_series(…)) as T)`` | ``cast(generate_series(…) as T)`` | ``explode(cast(sequence(…)
  as array<T>))`` |
| ``TIME`` | ``TIME`` | ``TIME`` (SQLGlot would write ``TIMESTAMP``) |

``timezone(z, x)`` on Spark needs to know whether ``x`` is an instant or a local time: an explicit
``cast(… as timestamptz)`` / ``cast(… as timestamp)`` says so; anything else is taken as an instant
(``timestamptz``), which is what collected timestamps with a zone are.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kiban import envref
from kiban.engines.meaning import rewrite_tree
from kiban.engines.refusal import Refused
from kiban.errors import KibanError, Location, ProjectError, ProjectErrors

if TYPE_CHECKING:
    from kiban.project import Project

QUALIFY_COLUMN = "__kiban_qualify_"  # helper columns of a rewritten QUALIFY; engines drop them from tables


class Untranslatable(KibanError):
    """A construct the target engine cannot compute as DuckDB does; ``line`` in the model and ``offset`` (the
    character where the construct starts in the SQL given to ``transpile``) when known."""

    def __init__(self, message: str, hint: str | None = None, line: int | None = None,
                 offset: int | None = None) -> None:
        super().__init__(message, hint)
        self.line = line
        self.offset = offset


def engine_of(url: str) -> str | None:
    """The SQL a warehouse URL speaks besides DuckDB's: 'postgres', 'spark', or None (DuckDB, unknown)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres"
    if url.startswith(("spark:", "sc://")):
        return "spark"
    return None


def refusals(target: str, models: Mapping[str, tuple[str, Any]]) -> list[ProjectError]:
    """Project errors for every model (key → (SQL, path)) with a construct ``target`` cannot run as DuckDB does:
    found when the project loads, so nothing the loader could know fails at run time (issue 18)."""

    errors: list[ProjectError] = []
    for key, (sql, path) in models.items():
        try:
            transpile(sql.strip().rstrip(";"), target, key)
        except Untranslatable as exc:
            errors.append(ProjectError(exc.message, _where(path, sql, exc), exc.hint))
        except KibanError:
            continue  # not a construct (SQL that does not parse): the loader and the build report those
    return errors


def refuse_unportable(project: Project) -> None:
    """Raise every construct the project's warehouse (PostgreSQL, Spark) cannot run as DuckDB does, all at once,
    each with its file, line and a hint (issue 18); nothing for DuckDB.

    Called where a project meets its warehouse — before a run builds anything (``kiban.run.runner``) and when the
    CLI loads the project — not by the loader: the project layer knows nothing of SQL dialects (.importlinter)."""
    target = engine_of(envref.lookup(project.config.warehouse) or "")
    if not target:
        return
    errors = refusals(target, {k: (a.sql, a.path) for k, a in project.assets.items()
                               if a.sql and a.python is None and a.layer != "lake"})
    if project.macros:
        first = next(iter(project.macros.values()))
        errors.append(ProjectError(f"macros/ holds DuckDB macros, which the {target} warehouse cannot run",
                                   Location(first.path, first.line, 1),
                                   "write the logic into the models (or a warehouse model), or use DuckDB"))
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)


def transpile(sql: str, target: str, model: str, layers: Mapping[str, str] | None = None,
              tables: Mapping[str, Mapping[str, str]] | None = None, zone: str | None = None) -> str:
    """``sql`` (DuckDB dialect) as one statement of ``target`` ('postgres', 'spark').

    ``model`` names the model in errors; ``layers`` maps bare table names to their layer (``orders`` →
    ``warehouse``) so unqualified references find their table. ``tables``: ``layer.name`` → its columns (lower
    name → DuckDB type), so that rewrites that depend on a column's type know it (engines.meaning). ``zone``: the
    session's time zone (Spark converts instants to wall times through it).
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

    try:
        trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    except ParseError as exc:
        raise KibanError(f"{model}: SQLGlot cannot parse the model: {_first_line(exc)}",
                         "the model must be valid DuckDB SQL") from None
    if len(trees) != 1:
        raise KibanError(f"{model}: a model is one SELECT statement, found {len(trees)} statements")
    tree = trees[0]
    tilde = _regex_tilde(sql)
    if tilde is not None:  # SQLGlot reads `~` as regexp_matches (a search); DuckDB's `~` is a full match
        raise Untranslatable(f"{model}: the regex operator ~ (line {tilde[0]}) has no {_engine(target)} equivalent "
                             "that SQLGlot writes faithfully", "say which match you mean: regexp_full_match(s, p) "
                             "(what DuckDB's ~ does) or regexp_matches(s, p) (a search), or keep this model on "
                             "the DuckDB engine", *tilde)
    if layers:
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table.name.lower()
            if not table.args.get("db") and name not in ctes and name in layers:
                table.set("db", exp.to_identifier(layers[name]))
    for join in tree.find_all(exp.Join):
        if str(join.args.get("method") or "").upper() == "ASOF":  # SQLGlot writes it through; no target runs it
            raise Untranslatable(f"{model}: ASOF JOIN{_line(join)} has no {_engine(target)} equivalent",
                                 "rewrite it as a join on a window (e.g. the latest row per key before the time), "
                                 "or keep this model on the DuckDB engine", _line_of(join), _offset_of(join))
    for node in tree.walk():
        construct = _refused(node, target)
        if construct:
            raise Untranslatable(f"{model}: {construct}{_line(node)} has no {_engine(target)} equivalent",
                                 "rewrite it with portable SQL, or keep this model on the DuckDB engine",
                                 _line_of(node), _offset_of(node))

    try:  # DuckDB's meaning first: division, casts, rounding, weekdays, date_diff, collation (engines.meaning)
        tree = rewrite_tree(tree, target, _columns_read(tree, tables))
    except Refused as refused:
        raise Untranslatable(f"{model}: {refused.construct}{_line(refused.node)} has no {_engine(target)} "
                             "equivalent that computes what DuckDB computes",
                             f"{refused.hint}, or keep this model on the DuckDB engine",
                             _line_of(refused.node), _offset_of(refused.node)) from None
    tree = _bottom_up(tree, lambda node: _rewrite(node, target, model, zone or "UTC"))
    if target == "postgres":
        tree = tree.transform(lambda node: _group_by_all(node) if isinstance(node, exp.Select) else node)
    # before SQLGlot's own QUALIFY rewrite, which selects a column twice in `SELECT *, x … QUALIFY`
    tree = tree.transform(lambda node: _eliminate_qualify(node, model) if isinstance(node, exp.Select) else node)
    try:
        return tree.sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise Untranslatable(f"{model}: {_first_line(exc)} — this construct has no {_engine(target)} equivalent",
                             "rewrite it with portable SQL, or keep this model on the DuckDB engine") from None


def _bottom_up(tree: Any, rewrite: Any) -> Any:
    """Every node of ``tree`` through ``rewrite``, children first: a rewritten node keeps its rewritten children
    (SQLGlot's ``transform`` does not visit the children of a node it replaced: ``dayname`` inside
    ``regexp_full_match`` stayed DuckDB's)."""
    for node in reversed(list(tree.walk())):
        new = rewrite(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def _regex_tilde(sql: str) -> tuple[int, int] | None:
    """The line and offset of the first binary ``~`` / ``!~`` (DuckDB's regex full match) in ``sql``, or None; a
    unary ``~`` (bitwise not) follows an operator, not an operand."""
    from sqlglot.dialects.duckdb import DuckDB
    from sqlglot.errors import SqlglotError
    from sqlglot.tokens import TokenType

    operand_end = {TokenType.VAR, TokenType.IDENTIFIER, TokenType.STRING, TokenType.NUMBER, TokenType.R_PAREN,
                   TokenType.R_BRACKET, TokenType.NULL, TokenType.TRUE, TokenType.FALSE}
    try:
        tokens = DuckDB().tokenize(sql)
    except SqlglotError:
        return None
    for before, token in itertools.pairwise(tokens):
        if token.token_type == TokenType.TILDE and (before.token_type in operand_end or before.text == "!"):
            return token.line, token.start
    return None


def _refused(node: Any, target: str) -> str | None:
    """The DuckDB construct ``node`` is, when SQLGlot would write it through to a target that cannot run it."""
    from sqlglot import exp

    pg = target == "postgres"
    if isinstance(node, exp.Star) and (node.args.get("except_") or node.args.get("replace") or node.args.get("rename")):
        return "SELECT * EXCLUDE/REPLACE/RENAME"
    if isinstance(node, exp.Columns):
        return "COLUMNS(…)"
    if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.INT128, exp.DataType.Type.UINT128):
        return "the HUGEINT type"
    if pg and isinstance(node, exp.Struct):
        return "a STRUCT value ({'k': v})"
    if pg and isinstance(node, exp.Lambda):
        return "a lambda (x -> …) in a list function"
    if pg and isinstance(node, exp.Ordered) and isinstance(node.this, exp.Var) and node.this.name.upper() == "ALL":
        return "ORDER BY ALL"
    if pg and isinstance(node, (exp.ArgMax, exp.ArgMin)):
        return f"{type(node).__name__.replace('Arg', 'arg_').lower()}()"
    return None


def _fn(name: str, *args: Any) -> Any:
    from sqlglot import exp

    return exp.Anonymous(this=name, expressions=list(args))


def _anchored(pattern: Any) -> Any:
    """``^(?:pattern)$``: a full match written as a search, for engines whose regex match searches."""
    from sqlglot import exp

    if isinstance(pattern, exp.Literal) and pattern.is_string:
        flags = "(?i)" if pattern.this.startswith("(?i)") else ""  # options lead the whole expression
        return exp.Literal.string(f"{flags}^(?:{pattern.this[len(flags):]})$")
    return exp.DPipe(this=exp.DPipe(this=exp.Literal.string("^(?:"), expression=pattern.copy()),
                     expression=exp.Literal.string(")$"))


def _rewrite(node: Any, target: str, model: str, zone: str = "UTC") -> Any:
    """One node of the DuckDB tree, as the target must read it (see the table in the module docstring)."""
    from sqlglot import exp

    pg = target == "postgres"
    if isinstance(node, exp.RegexpFullMatch):
        return exp.RegexpLike(this=node.this.copy(), expression=_anchored(node.expression))
    if isinstance(node, exp.Dayname):
        if pg:
            return _fn("to_char", node.this.copy(), exp.Literal.string("FMDay"))
        return _fn("date_format", node.this.copy(), exp.Literal.string("EEEE"))
    if isinstance(node, exp.DayOfWeekIso):
        if pg:
            return exp.Extract(this=exp.var("isodow"), expression=node.this.copy())
        return exp.Add(this=_fn("weekday", node.this.copy()), expression=exp.Literal.number(1))
    if pg and isinstance(node, (exp.Hour, exp.Minute, exp.Second)):
        unit = type(node).__name__.lower()
        return exp.Extract(this=exp.var(unit), expression=node.this.copy())
    if isinstance(node, exp.Cast) and isinstance(node.this, (exp.Explode, exp.Unnest)):
        generator = node.this
        inner = generator.this if isinstance(generator, exp.Explode) else (generator.expressions or [None])[0]
        if isinstance(inner, exp.GenerateSeries):
            if pg:  # PostgreSQL's generate_series is already a set of rows
                return exp.Cast(this=inner.copy(), to=node.to.copy())
            return exp.Explode(this=exp.Cast(this=inner.copy(),
                                             to=exp.DataType.build(f"array<{node.to.sql('spark')}>", dialect="spark")))
    if target == "spark" and isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIME:
        return exp.DataType(this=exp.DataType.Type.USERDEFINED, kind="TIME")  # SQLGlot would write TIMESTAMP
    if target == "spark" and isinstance(node, exp.Anonymous) and node.name.lower() == "timezone" \
            and len(node.expressions) == 2:
        where, value = node.expressions
        ntz = exp.DataType(this=exp.DataType.Type.USERDEFINED, kind="TIMESTAMP_NTZ")
        local = isinstance(value, exp.Cast) and value.to.this in (exp.DataType.Type.TIMESTAMP,
                                                                    exp.DataType.Type.TIMESTAMPNTZ)
        if local:  # a wall-clock time in `where` → the instant
            return exp.Cast(this=_fn("convert_timezone", where.copy(), exp.Literal.string(zone),
                                     exp.Cast(this=value.copy(), to=ntz.copy())), to=exp.DataType.build("timestamp"))
        # instant → its wall time in `where`: Spark turns an instant into a wall time through the session's zone
        return _fn("convert_timezone", exp.Literal.string(zone), where.copy(), exp.Cast(this=value.copy(), to=ntz))
    return node


def _is_star(select: Any) -> bool:
    from sqlglot import exp

    return isinstance(select, exp.Star) or (isinstance(select, exp.Column) and isinstance(select.this, exp.Star))


def _group_by_all(select: Any) -> Any:
    """``GROUP BY ALL`` → ``GROUP BY`` every select item that holds no aggregate (as DuckDB reads it)."""
    from sqlglot import exp

    group = select.args.get("group")
    if not group or not group.args.get("all"):
        return select
    keys = []
    for item in select.selects:
        value = item.this if isinstance(item, exp.Alias) else item
        if value.find(exp.AggFunc, exp.Window) is None and not isinstance(value, exp.Literal):
            keys.append(value.copy())
    select.set("group", exp.Group(expressions=keys) if keys else None)
    return select


def _eliminate_qualify(select: Any, model: str) -> Any:
    """``SELECT … QUALIFY cond`` → ``SELECT … FROM (SELECT …, <windows> AS __kiban_qualify_N) WHERE cond``.

    Unlike SQLGlot's own rewrite it keeps ``SELECT *, x`` valid (x is not selected twice). With a ``*`` the
    helper columns cannot be left out of the outer SELECT: the engines drop them from the built table.
    (Spark 4 parses QUALIFY too, but SQLGlot's Spark writer always rewrites it, so both targets use this.)"""
    from sqlglot import exp

    qualify = select.args.get("qualify")
    if not qualify:
        return select
    condition = qualify.pop().this
    star = any(_is_star(s) for s in select.selects)
    names = []
    for item in select.selects:
        if _is_star(item):
            continue
        if not item.alias_or_name:
            raise KibanError(f"{model}: every column of a SELECT with QUALIFY needs a name on PostgreSQL "
                             f"({item.sql('duckdb')} has none)", "give it one with AS")
        names.append(item.alias_or_name)
    aliases = {s.alias: s.this for s in select.selects if isinstance(s, exp.Alias)}
    for n, window in enumerate(list(condition.find_all(exp.Window))):
        for column in list(window.find_all(exp.Column)):  # a window may name a select alias: use its expression
            if not column.table and column.name in aliases:
                column.replace(aliases[column.name].copy())
        helper = exp.column(f"{QUALIFY_COLUMN}{n}")
        select.select(exp.alias_(window.copy(), helper.name), copy=False)
        if window is condition:
            condition = helper
        else:
            window.replace(helper)
    if not star:  # plain columns the filter reads must come out of the subquery too
        for column in list(condition.find_all(exp.Column)):
            if column.name not in names and not column.name.startswith(QUALIFY_COLUMN):
                select.select(exp.alias_(column.copy(), f"{QUALIFY_COLUMN}c_{column.name}"), copy=False)
                column.replace(exp.column(f"{QUALIFY_COLUMN}c_{column.name}"))
    outer = [exp.Star()] if star else [exp.column(name, quoted=True) for name in names]
    # ORDER BY / LIMIT / OFFSET apply after QUALIFY's filter: they move to the outer query (inside, LIMIT would
    # cut rows before the filter). The outer query sees the inner one's columns by name, unqualified.
    tail = {k: select.args.get(k) for k in ("order", "limit", "offset") if select.args.get(k)}
    for k in tail:
        select.set(k, None)
    inner = select.subquery("__kiban_q", copy=False)
    wrapped = exp.select(*outer).from_(inner, copy=False).where(condition, copy=False)
    for k, node in tail.items():
        for column in node.find_all(exp.Column):
            column.set("table", None)
        wrapped.set(k, node)
    return wrapped


def _columns_read(tree: Any, tables: Mapping[str, Mapping[str, str]] | None) -> dict[str, str]:
    """Column name → type over the tables ``tree`` reads; a name two of them type differently is left out."""
    from sqlglot import exp

    if not tables:
        return {}
    found: dict[str, str] = {}
    clash: set[str] = set()
    for table in tree.find_all(exp.Table):
        key = f"{table.db}.{table.name}".lower() if table.db else table.name.lower()
        for name, kind in (tables.get(key) or {}).items():
            if found.setdefault(name, kind) != kind:
                clash.add(name)
    return {k: v for k, v in found.items() if k not in clash}


def _line_of(node: Any) -> int | None:
    """The line of the model where ``node`` starts, when SQLGlot recorded it."""
    from sqlglot import exp

    if node is None:
        return None
    for part in (node, *node.find_all(exp.Identifier, exp.Literal, exp.Column, exp.Func)):
        line = part.meta.get("line") if hasattr(part, "meta") else None
        if line:
            return int(line)
    return None


def _offset_of(node: Any) -> int | None:
    """The character where ``node`` starts in the model's SQL, when SQLGlot recorded it."""
    from sqlglot import exp

    if node is None:
        return None
    for part in (node, *node.find_all(exp.Identifier, exp.Literal, exp.Column, exp.Func)):
        start = part.meta.get("start") if hasattr(part, "meta") else None
        if start is not None:
            return int(start)
    return None


def _where(path: Any, sql: str, exc: Untranslatable) -> Location:
    """The file, line and column of a refused construct; ``sql`` is the model's text before it was stripped."""
    lead = len(sql) - len(sql.lstrip())
    if exc.offset is None:
        return Location(path, exc.line + sql.count("\n", 0, lead) if exc.line else None)
    at = lead + exc.offset
    return Location(path, sql.count("\n", 0, at) + 1, at - (sql.rfind("\n", 0, at) + 1) + 1)


def _line(node: Any) -> str:
    """`` (line N)`` for messages, or nothing."""
    line = _line_of(node)
    return f" (line {line})" if line else ""


def _engine(target: str) -> str:
    return {"postgres": "PostgreSQL", "spark": "Spark SQL"}.get(target, target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
