"""dbt tests → kiban checks, with their severity.

dbt-core's four generic tests and dbt_utils' common ones become kiban's own kinds (one scan per
table, readable names); any other generic test whose macro the project or a vendored package has
is rendered into a ``sql`` check (the failing rows, as dbt runs it); singular tests (``tests/*.sql``)
are converted by the importer. A test with a ``where`` config becomes a ``sql``
check over the filtered rows. What cannot be converted goes to the report with its file and line.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiban.dbt.context import Config, Renderer, RenderError, locate
from kiban.dbt.project import Node, Properties
from kiban.dbt.relation import Relation
from kiban.dbt.report import ImportReport
from kiban.status import Severity

OPTION_KEYS = {"config", "severity", "where", "error_if", "warn_if", "name", "tags", "store_failures", "limit",
               "enabled", "meta", "description", "fail_calc", "column_name", "alias", "schema", "database"}
CONDITION = re.compile(r"(<=|>=|!=|<>|=|<|>)\s*-?\d+(\.\d+)?")
_RELATION_ARG = re.compile(r"\s*(\{\{)?\s*(ref|source)\s*\(")
_ONE_EXPRESSION = re.compile(r"\{\{(?:(?!\}\}).)*\}\}", re.S)
_DURATION = {"minute": "minutes", "hour": "hours", "day": "days", "week": "weeks"}


@dataclass(frozen=True)
class DbtTest:
    """One dbt test to convert: its kind and arguments, what it tests, and where it is written (for the report).

    ``options`` are the kiban check's options gathered so far (severity, fail_above); it is the caller's dict, and
    a test rendered into a sql check drops ``fail_above`` from it (the condition is then in the SQL)."""

    kind: str
    args: dict[str, Any]
    column: str | None
    asset: Relation
    where: Any
    options: dict[str, Any]
    file: str
    line: int | None


@dataclass
class Sidecar:
    """What a kiban sidecar will say: description, owner, tags, columns and checks."""

    description: str = ""
    owner: str | None = None
    tags: list[str] = field(default_factory=list)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # materialized, time_column…

    def column(self, name: str) -> dict[str, Any]:
        return self.columns.setdefault(name, {"name": name})

    def _distinct_names(self) -> None:
        """Names given to checks (rendered tests, singular tests) are unique within a sidecar: _2, _3…"""
        seen: set[str] = set()
        for checks in [self.checks, *(c.get("checks", []) for c in self.columns.values())]:
            for check in checks:
                if isinstance(check, dict) and check.get("name"):
                    name, n = str(check["name"]), 1
                    while name in seen:
                        n += 1
                        name = f"{str(check['name'])[:115]}_{n}"
                    check["name"] = name
                    seen.add(name)

    def as_yaml(self) -> dict[str, Any]:
        self._distinct_names()
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        if self.owner:
            out["owner"] = self.owner
        if self.tags:
            out["tags"] = self.tags
        out.update(self.extra)
        if self.columns:
            out["columns"] = list(self.columns.values())
        if self.checks:
            out["checks"] = self.checks
        return out


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _check_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)[:120]
    return "_" + name if not name or name[0].isdigit() else name


class TestConverter:
    """Converts the tests of property entries into the checks of sidecars."""

    def __init__(self, renderer: Renderer, report: ImportReport) -> None:
        self.renderer = renderer
        self.report = report
        self._condition = "!= 0"  # the test being converted: its error_if (or warn_if, for a warn test)
        self._fail_calc: str | None = None  # …and its `fail_calc` config, over the macro's own
        self._thresholds_done = False

    def convert_entry(self, props: Properties, node: Node, asset: Relation, sidecar: Sidecar) -> None:
        entry = props.data
        for i, column in enumerate(entry.get("columns") or []):
            if not isinstance(column, dict) or not column.get("name"):
                continue
            name = str(column["name"])
            for j, test in enumerate(column.get("data_tests") or column.get("tests") or []):
                key = "data_tests" if column.get("data_tests") else "tests"
                self._one(test, name, props, ("columns", i, key, j), node, asset, sidecar)
        for j, test in enumerate(entry.get("data_tests") or entry.get("tests") or []):
            key = "data_tests" if entry.get("data_tests") else "tests"
            self._one(test, None, props, (key, j), node, asset, sidecar)

    def _one(self, test: Any, column: str | None, props: Properties, path: tuple[str | int, ...], node: Node,
             asset: Relation, sidecar: Sidecar) -> None:
        self.report.tests += 1
        line = props.line(*path)
        file = self.renderer.project.rel(props.doc.path)
        if isinstance(test, str):
            kind, args = test, {}
        elif isinstance(test, dict) and len([k for k in test if k not in OPTION_KEYS]) >= 1:
            kind = next(k for k in test if k not in OPTION_KEYS)
            args = dict(test[kind] or {}) if isinstance(test[kind], dict) else {}
            args.update({k: v for k, v in test.items() if k in OPTION_KEYS})
        else:
            self.report.skip(file, line, f"test {test!r}", "not a test as dbt writes one")
            return
        if isinstance(args.get("arguments"), dict):  # dbt 1.10+: arguments beside config
            args = {**args.pop("arguments"), **args}
        config = dict(args.pop("config", None) or {})
        for key in ("severity", "where", "error_if", "warn_if", "name", "tags", "store_failures", "limit", "enabled"):
            if key in args:
                config.setdefault(key, args.pop(key))
        # dbt_project.yml's `data_tests:` configs (`+severity: warn` for a folder) under the test's own
        project = self.renderer.project
        folders = Path(file).parts[1:-1]  # the property file's folders under models/ (seeds/, snapshots/)
        test_name = "_".join(p for p in (kind.split(".")[-1], asset.identifier, column) if p)
        for key, value in project.test_config((project.name, *folders, test_name)).items():
            config.setdefault(key, value)
        try:  # dbt renders a test's arguments: `expression: "d = {{ dbt_date.yesterday('x') }}"`, a var in `where`
            args = {k: self._rendered(v, node, asset) for k, v in args.items()}
            config = {k: self._rendered(v, node, asset) for k, v in config.items()}
        except RenderError as exc:
            self.report.skip(file, line, f"test {kind}", f"its arguments could not be rendered: {exc.message}")
            return
        if config.get("enabled") is False or args.pop("enabled", True) is False:
            self.report.skip(file, line, f"test {kind}", "disabled (enabled: false)")
            return
        if args.get("quote") is False:
            self.report.approximate(file, line, f"test {kind}", "quote: false: the values are compared as "
                                    "written, not as SQL expressions")
        options: dict[str, Any] = {}
        severity = str(config.get("severity") or "error").lower()
        if severity == Severity.WARN:
            options["severity"] = Severity.WARN
        # dbt: failures = fail_calc over the test's rows; error if `failures <error_if>`, else warn if `<warn_if>`
        condition = str(config.get("error_if" if severity == Severity.ERROR else "warn_if") or "!= 0").strip()
        if not CONDITION.fullmatch(condition):  # pasted into SQL below: only a comparison with a number
            self.report.approximate(file, line, f"test {kind}", f"condition {condition!r} is not a comparison with "
                                    "a number; the check fails on any failing row")
            condition = "!= 0"
        self._condition, self._thresholds_done = condition, False
        fail_calc = config.get("fail_calc") or args.pop("fail_calc", None)
        self._fail_calc = str(fail_calc) if fail_calc and str(fail_calc).replace(" ", "").lower() != "count(*)" \
            else None
        compact = condition.replace(" ", "")
        if compact.startswith(">") and compact[1:].isdigit() and compact[1:] != "0":
            options["fail_above"] = int(compact[1:])
        where = config.get("where")
        what = f"test {kind}" + (f" on {column}" if column else "")
        try:
            check = self._check(DbtTest(kind, args, column, asset, where, options, file, line))
        except RenderError as exc:
            self.report.skip(file, line, what, exc.message)
            return
        if check is None:
            return
        if not self._thresholds_done:
            if compact not in ("!=0", ">0") and "fail_above" not in options:
                key = "error_if" if severity == Severity.ERROR else "warn_if"
                self.report.approximate(file, line, f"test {kind}", f"{key} {condition} has no kiban equivalent; "
                                        "the check fails on any failing row")
            if config.get("warn_if") and severity == Severity.ERROR:
                self.report.approximate(file, line, f"test {kind}", "warn_if is dropped: a kiban check has one "
                                        "severity")
        target, entry = check
        if target is None:
            sidecar.checks.append(entry)
        else:
            sidecar.column(target).setdefault("checks", []).append(entry)
        self.report.checks += 1

    def _rendered(self, value: Any, node: Node, asset: Relation) -> Any:
        """A test argument with Jinja, rendered in the tested node's context; ``ref()``/``source()`` arguments
        are left for the check (``to:``) or the macro (a relation object) to read."""
        if isinstance(value, list):
            return [self._rendered(v, node, asset) for v in value]
        if isinstance(value, dict):
            return {k: self._rendered(v, node, asset) for k, v in value.items()}
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value) or _RELATION_ARG.match(value):
            return value
        text = self.renderer.render_string(value, node, this=asset)
        if _ONE_EXPRESSION.fullmatch(value.strip()):  # "{{ var('statuses') }}" is the list, as dbt renders it
            try:
                return ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return text
        return text

    def _check(self, test: DbtTest) -> tuple[str | None, Any] | None:
        kind, args, asset, where, options = test.kind, test.args, test.asset, test.where, test.options
        short = kind.split(".")[-1]
        column = test.column or (str(args["column_name"]) if args.get("column_name") else None)
        test = replace(test, column=column)
        model = asset.render()
        # a condition kiban's thresholds cannot say (error_if: "<1"): dbt's verdict as a sql check
        special = ((self._condition.replace(" ", "") not in ("!=0", ">0") and "fail_above" not in options)
                   or self._fail_calc is not None)
        if (where or special) and "." not in kind:
            if where:
                model = f"(select * from {asset.render()} where {where}) as dbt_subquery"
            sql = self._core_sql(short, args, column, model)
            if sql is not None:
                if special:
                    sql = (f"select * from (select {self._fail_calc or 'count(*)'} as failures from ({sql}) as "
                           f"dbt_internal_test) where failures {self._condition}")
                    options.pop("fail_above", None)
                    self._thresholds_done = True
                return None, {"sql": sql, "name": _check_name(f"{short}_{column or ''}" + ("_where" if where else "")
                                                              ).rstrip("_"), **_row_options(options, sql_check=True)}
        if where or special:
            return self._generic(test)
        if not where and column and short in ("not_null", "unique") and "." not in kind:
            return column, ({short: None, **options} if options else short)
        if not where and column and short == "accepted_values" and "." not in kind:
            return column, {"accepted_values": list(args.get("values") or []), **options}
        if not where and column and short == "relationships" and "." not in kind:
            to = self._relation(str(args.get("to", "")))
            return column, {"relationships": {"to": to, "field": str(args.get("field") or column)}, **options}
        if not where and kind.startswith("dbt_utils."):
            native = self._dbt_utils(short, args, column)
            if native is not None:
                target, body = native
                if isinstance(body, dict):
                    return target, {**body, **_row_options(options, sql_check=False,
                                                           kind=next(iter(body)))}
        return self._generic(test)

    def _dbt_utils(self, short: str, args: dict[str, Any], column: str | None) -> tuple[str | None, Any] | None:
        if short == "unique_combination_of_columns":
            return None, {"unique": [str(c) for c in args.get("combination_of_columns") or []]}
        if short == "expression_is_true" and args.get("expression"):
            expression = f"{column} {args['expression']}" if column else str(args["expression"])
            return None, {"expression": expression}
        if short == "accepted_range" and column and args.get("inclusive", True):
            bounds = {k: args[f"{k}_value"] for k in ("min", "max") if args.get(f"{k}_value") is not None}
            if bounds and all(isinstance(v, int | float) for v in bounds.values()):
                return column, {"range": bounds}
        if short == "not_accepted_values" and column and args.get("values"):
            values = ", ".join(_sql_literal(v) for v in args["values"])
            return None, {"expression": f"{column} not in ({values})"}
        if short == "not_empty_string" and column:
            inner = f"trim({column})" if args.get("trim_whitespace", True) else column
            return None, {"expression": f"{inner} <> ''"}
        if (short == "recency" and args.get("field") and str(args.get("datepart")) in _DURATION
                and set(args) <= {"field", "datepart", "interval"}):
            return None, {"freshness": {"column": str(args["field"]),
                                        "max_age": f"{args.get('interval', 1)} {_DURATION[str(args['datepart'])]}"}}
        return None

    def _core_sql(self, short: str, args: dict[str, Any], column: str | None, model: str) -> str | None:
        if short == "not_null" and column:
            return f"select * from {model} where {column} is null"
        if short == "unique" and column:
            return (f"select {column} from {model} where {column} is not null group by {column} "
                    f"having count(*) > 1")
        if short == "accepted_values" and column and args.get("values"):
            values = ", ".join(_sql_literal(v) for v in args["values"])
            return f"select * from {model} where {column} not in ({values})"
        if short == "relationships" and column:
            to, to_field = self._relation(str(args.get("to", ""))), str(args.get("field") or column)
            child = model.removesuffix(" as dbt_subquery")
            return (f"select child.* from {child} as child left join {to} as parent "
                    f"on child.{column} = parent.{to_field} "
                    f"where child.{column} is not null and parent.{to_field} is null")
        return None

    def _generic(self, test: DbtTest) -> tuple[str | None, Any] | None:
        kind, args, column, asset, where = test.kind, test.args, test.column, test.asset, test.where
        options, file, line = test.options, test.file, test.line
        package, _, short = kind.rpartition(".")
        macro = None
        for pkg in ([package] if package else [self.renderer.project.name, *self.renderer.macros]):
            macro = self.renderer.macros.get(pkg, {}).get(f"test_{short}")
            if macro is not None:
                break
        if macro is None:
            self.report.skip(file, line, f"test {kind}", f"no generic test macro test_{short} in the project or its "
                             "vendored packages (and kiban has no check of that kind)")
            return None
        model: Relation = asset
        if where:
            model = Relation("", f"(select * from {asset.render()} where {where}) as dbt_subquery")
        kwargs = {k: v for k, v in args.items() if k not in OPTION_KEYS}
        kwargs["model"] = model
        if column:
            kwargs["column_name"] = column
        for key, value in list(kwargs.items()):
            if isinstance(value, str) and re.match(r"\s*(\{\{)?\s*(ref|source)\s*\(", value):
                kwargs[key] = self.renderer.relation_of(value)
        values: dict[str, Any] = {}
        self.renderer.set_names(this=asset, execute=True, config=Config(values))
        try:
            sql = str(macro(**kwargs)).strip()
        except Exception as exc:  # whatever the macro raised: its file and line, in the report
            error = locate(exc, self.renderer_node(file), self.renderer.project.root)
            where = self.renderer.project.rel(error.file) + f":{error.line}" if error.file else ""
            self.report.skip(file, line, f"test {kind}", f"its macro test_{short} could not be rendered"
                             + (f" ({where})" if where else "") + f": {error.message}")
            return None
        name = _check_name(f"{short}_{column}" if column else short)
        fail_calc = str(self._fail_calc or values.get("fail_calc") or "count(*)")
        if fail_calc.replace(" ", "").lower() != "count(*)" or ("fail_above" not in options and
                                                               self._condition.replace(" ", "") not in ("!=0", ">0")):
            # dbt's verdict exactly: one row when the failures it computes meet the condition
            sql = (f"select * from (select {fail_calc} as failures from ({sql}) as dbt_internal_test) "
                   f"where failures {self._condition}")
            options.pop("fail_above", None)
            self._thresholds_done = True
        self.report.approximate(file, line, f"test {kind}", f"rendered from macro test_{short} into a sql check "
                                f"'{name}'")
        return None, {"sql": sql, "name": name, **_row_options(options, sql_check=True)}

    def renderer_node(self, file: str) -> Node:
        path = self.renderer.project.root / file
        return Node("test", path.stem, path, file, (self.renderer.project.name,))

    def _relation(self, text: str) -> str:
        return self.renderer.render_relation(text, None)


def _row_options(options: dict[str, Any], *, sql_check: bool, kind: str = "sql") -> dict[str, Any]:
    out = dict(options)
    if kind in ("freshness",) and "fail_above" in out:
        out.pop("fail_above")
    return out
