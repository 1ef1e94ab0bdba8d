"""The Jinja environment and the dbt-compatible context a model is rendered with, once, at import.

A real Jinja2 engine renders the dbt SQL; what dbt adds is given here: ``ref``, ``source``,
``config``, ``var``, ``env_var``, ``target``, ``this``, ``is_incremental``, the project's macros and
the vendored packages' macros (each package sees its own macros unqualified, everyone sees them as
``package.macro``), ``adapter.dispatch`` (``duckdb__`` then ``default__``), ``return``, and the
introspection macros need (``run_query``, ``statement``, ``adapter.get_columns_in_relation``),
answered by an in-memory DuckDB that holds the seeds and every model already rendered.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import itertools
import json
import os
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
import pytz
import yaml

from kiban.dbt import builtins
from kiban.dbt.project import DbtProject, Node
from kiban.dbt.relation import Column, QueryTable, Relation
from kiban.dbt.versions import NoSuchVersion

_MISSING = object()
_TEST_BLOCK = re.compile(r"{%(-?)\s*test\s+(\w+)")
_END_TEST = re.compile(r"{%(-?)\s*endtest\s*(-?)%}")
_MATERIALIZATION = re.compile(r"{%-?\s*materialization\b.*?{%-?\s*endmaterialization\s*-?%}", re.S)


class RenderError(Exception):
    """A problem found while rendering: the message, and where (set from the Jinja traceback)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.file: Path | None = None
        self.line: int | None = None


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def _preprocess(text: str) -> str:
    """dbt's block tags Jinja does not know: generic tests become macros ``test_<name>``;
    materializations are dropped (kiban builds tables itself); lines keep their numbers."""
    text = _MATERIALIZATION.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = _TEST_BLOCK.sub(lambda m: "{%" + m.group(1) + " macro test_" + m.group(2), text)
    return _END_TEST.sub(lambda m: "{%" + m.group(1) + " endmacro " + m.group(2) + "%}", text)


_UNREACHABLE = (types.ModuleType, PurePath)


def _members(module: types.ModuleType) -> AttrDict:
    """``modules.datetime`` as dbt offers it, without the modules it imports (``datetime.sys``)."""
    return AttrDict({name: value for name in dir(module) if not name.startswith("_")
                     and not isinstance(value := getattr(module, name), types.ModuleType)})


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """Jinja that cannot reach Python internals (``''.__class__.__mro__``…): importing a project someone
    else wrote must not run arbitrary code. Packages' private macros (``dbt_utils._is_relation``) are fine."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # a module reaches every other one (`datetime.sys.modules['os']`), a path writes files, a macro's
        # internals reach its file: none is dbt's API, so none is reachable from a template
        if isinstance(value, _UNREACHABLE) or isinstance(obj, _UNREACHABLE):
            return False
        if isinstance(obj, MacroFunc):
            return attr in ("name", "package")
        if isinstance(obj, Namespace) and not attr.startswith("__"):
            return True
        return bool(super().is_safe_attribute(obj, attr, value))


def _returning(func: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return func(*args)
        except _Return as done:
            return done.value

    return call


class MacroFunc:
    """A Jinja macro called the dbt way: ``return(x)`` inside it gives ``x`` to the caller."""

    def __init__(self, name: str, package: str, macro: Any, path: Path) -> None:
        self.name, self.package, self.macro, self.path = name, package, macro, path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.macro(*args, **kwargs)
        except _Return as done:
            return done.value


class Namespace:
    """``dbt_utils.star``: a package's macros as attributes."""

    def __init__(self, name: str, macros: dict[str, Any]) -> None:
        self._name, self._macros = name, macros

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._macros[name]
        except KeyError:
            raise RenderError(f"unknown macro {self._name}.{name}",
                              f"the package {self._name} has no macro {name}") from None


class AttrDict(dict[str, Any]):
    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Config:
    """``config(...)`` in a model: records what it says; ``config.get`` reads it back."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        for arg in args:
            if isinstance(arg, dict):
                self.values.update(arg)
        self.values.update(kwargs)
        return ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.values:
            raise RenderError(f"config '{key}' is required")
        return self.values[key]

    def set(self, key: str, value: Any) -> str:
        self.values[key] = value
        return ""


@dataclass
class Rendered:
    sql: str
    refs: list[tuple[str, int | None]] = field(default_factory=list)  # dbt names of models/seeds it refs
    sources: list[tuple[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


Resolver = Callable[[str, str | None], Relation]
SourceResolver = Callable[[str, str], Relation]


class Renderer:
    """Renders models (and tests) of one dbt project; build once, render many."""

    def __init__(self, project: DbtProject, cli_vars: dict[str, Any], database: Any) -> None:
        self.project = project
        self.cli_vars = cli_vars
        self.db = database  # a DuckDB connection: seeds and rendered models, for introspection
        self.sources: dict[str, str] = {}  # template name (path) → preprocessed text
        self.env = _Sandbox(
            loader=jinja2.FunctionLoader(self._load), extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
            keep_trailing_newline=True, autoescape=False, cache_size=-1)
        self.env.filters["as_bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() == "true"
        self.env.filters["as_number"] = lambda v: v if isinstance(v, int | float) else float(v)
        self.env.filters["as_text"] = str
        self.env.filters["as_native"] = lambda v: v
        self.results: dict[str, dict[str, Any]] = {}
        self.pending_views: list[tuple[str, str]] = []  # (relation, SQL): created when a macro first looks
        self.warnings: list[str] = []
        self.macros: dict[str, dict[str, MacroFunc]] = {}  # package → name → macro
        self.base: dict[str, Any] = {}
        self.scopes: dict[str, dict[str, Any]] = {}
        self.resolve_ref: Resolver = lambda name, package: Relation("", name)
        self.resolve_source: SourceResolver = lambda src, table: Relation("", f"{src}_{table}")
        self._build_base()
        self._load_macros()

    # --- loading -------------------------------------------------------------------------------
    def _load(self, name: str) -> tuple[str, str, Callable[[], bool]]:
        if name not in self.sources:
            self.sources[name] = _preprocess(Path(name).read_text(encoding="utf-8"))
        return self.sources[name], name, lambda: True

    def _build_base(self) -> None:
        base = self.base
        base.update(self.env.globals)
        base.update({
            "return": _return, "log": lambda *a, **k: "", "print": lambda *a, **k: "",
            "exceptions": AttrDict(raise_compiler_error=_compiler_error, warn=self._warn,
                                   raise_not_implemented=_compiler_error),
            "modules": AttrDict(datetime=_members(datetime), re=_members(re), itertools=_members(itertools),
                                pytz=AttrDict(timezone=pytz.timezone, utc=pytz.utc, UTC=pytz.UTC,
                                              FixedOffset=pytz.FixedOffset, all_timezones=pytz.all_timezones,
                                              common_timezones=pytz.common_timezones,
                                              UnknownTimeZoneError=pytz.UnknownTimeZoneError)),
            "fromjson": lambda s, d=None: json.loads(s) if s else d, "tojson": lambda o, **k: json.dumps(o, **k),
            "fromyaml": lambda s, d=None: yaml.safe_load(s) if s else d,
            "toyaml": lambda o, **k: yaml.safe_dump(o, **k),
            "zip": zip, "set": set, "local_md5": _md5, "env_var": _env_var,
            "target": AttrDict(name="dev", type="duckdb", schema="main", database=self.project.name,
                               profile_name=self.project.name, threads=1, target_name="dev"),
            "flags": AttrDict(FULL_REFRESH=False, WHICH="run", STORE_FAILURES=False),
            "invocation_id": "kiban-import", "run_started_at": datetime.datetime.now(datetime.UTC),
            "project_name": self.project.name, "graph": {"nodes": {}, "sources": {}, "exposures": {}},
            "adapter": _Adapter(self), "api": AttrDict(Relation=_RelationApi(), Column=Column),
            "run_query": self._run_query, "statement": self._statement, "load_result": self.results.get,
            "load_relation": self._load_relation, "doc": self._doc, "builtins": AttrDict(config=None),
            "dbt": Namespace("dbt", dict(builtins.MACROS)), "var": self._var,
            "should_store_failures": lambda: False, "get_where_subquery": lambda relation: relation,
        })
        base.update(builtins.MACROS)  # dbt's global macros are callable unqualified too

    def _load_macros(self) -> None:
        for package in reversed(self.project.packages):  # the root project last: its macros win
            macros: dict[str, MacroFunc] = {}
            self.macros[package.name] = macros
            scope = dict(self.base)
            self.scopes[package.name] = scope
            self.base[package.name] = Namespace(package.name, macros)
            for path in package.macro_files:
                try:  # the module's own context: Jinja exports no `_private` macros, dbt_utils has some
                    template = self.env.get_template(str(path))
                    context = template.new_context(scope, shared=True)
                    for _ in template.root_render_func(context):
                        pass
                except jinja2.TemplateSyntaxError as exc:
                    error = RenderError(f"Jinja syntax error: {exc.message}")
                    error.file, error.line = path, exc.lineno
                    raise error from None
                for name, value in context.vars.items():
                    if isinstance(value, jinja2.runtime.Macro):
                        # a macro of the same file is called as Jinja's own Macro, not through MacroFunc: its
                        # `return(x)` must end it there, not its caller (dbt_date's get_test_dates)
                        value._func = _returning(value._func)
                        macros[name] = MacroFunc(name, package.name, value, path)
        for package_name, package_macros in self.macros.items():
            for name, scope in self.scopes.items():
                scope[package_name] = self.base[package_name]
                if name == package_name:
                    scope.update(package_macros)
        root = self.project.name
        self.base.update(self.macros.get(root, {}))  # project macros are global
        for name, scope in self.scopes.items():
            if name != root:
                for macro_name, macro in self.macros.get(root, {}).items():
                    scope.setdefault(macro_name, macro)

    def _set(self, **names: Any) -> None:
        """Names of the model being rendered, seen by the model and by every macro it calls."""
        self.base.update(names)
        for scope in self.scopes.values():
            scope.update(names)

    # --- rendering -----------------------------------------------------------------------------
    def render(self, node: Node, *, this: Relation, execute: bool, incremental: bool = False,
               config: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Rendered:
        """Render one node's SQL; a problem becomes :class:`RenderError` with its file and line."""
        out = Rendered(sql="", config=dict(config or {}))

        def ref(*args: str, **kwargs: Any) -> Relation:
            if not args or len(args) > 2:
                raise RenderError("ref() takes a model name, or a package and a model name")
            name, package = (args[0], None) if len(args) == 1 else (args[1], args[0])
            name = self.project.versioned(name, kwargs.get("v", kwargs.get("version")))
            out.refs.append((name, None))
            return self.resolve_ref(name, package)

        def source(source_name: str, table_name: str) -> Relation:
            out.sources.append((source_name, table_name))
            return self.resolve_source(source_name, table_name)

        model = AttrDict(name=node.name, alias=node.name, unique_id=f"{node.kind}.{self.project.name}.{node.name}",
                         resource_type=node.kind, package_name=self.project.name, path=node.rel,
                         original_file_path=node.rel, config=out.config, fqn=list(node.fqn), raw_code=node.text)
        self._set(ref=ref, source=source, config=Config(out.config), this=this, model=model, execute=execute,
                  is_incremental=lambda: incremental, should_full_refresh=lambda: False,
                  database=self.project.name, schema=this.schema, **(extra or {}))
        try:
            template = self.env.get_template(str(node.path))
            out.sql = template.render(self.scopes[self.project.name])
        except jinja2.TemplateSyntaxError as exc:
            error = RenderError(f"Jinja syntax error: {exc.message}")
            error.file, error.line = Path(exc.filename or node.path), exc.lineno
            raise error from None
        except Exception as exc:  # anything the Jinja raised: find the line in the template's frames
            raise locate(exc, node, self.project.root) from None
        return out

    def set_names(self, **names: Any) -> None:
        self._set(**names)

    def render_relation(self, text: str, node: Node | None) -> str:
        """``ref('customers')`` or ``source('shop', 'orders')`` as a test argument writes it → ``mart.customers``."""
        expr = text.strip()
        template = expr if expr.startswith("{{") else "{{ " + expr + " }}"

        def ref(*args: str, **kwargs: Any) -> Relation:
            return self.resolve_ref(self.project.versioned(args[-1], kwargs.get("v", kwargs.get("version"))),
                                    args[0] if len(args) > 1 else None)

        self._set(ref=ref, source=self.resolve_source, execute=True)
        try:
            return self.env.from_string(template).render(self.scopes[self.project.name]).strip()
        except RenderError:
            raise
        except Exception as exc:
            raise RenderError(f"cannot read {text!r} as a relation: {exc}") from None

    def relation_of(self, text: str) -> Any:
        """``ref('x')`` written as a test's argument, as the object a macro gets (a Relation, not text)."""
        expr = text.strip()
        if expr.startswith("{{") and expr.endswith("}}"):
            expr = expr[2:-2]

        def ref(*args: str, **kwargs: Any) -> Relation:
            return self.resolve_ref(self.project.versioned(args[-1], kwargs.get("v", kwargs.get("version"))),
                                    args[0] if len(args) > 1 else None)

        self._set(ref=ref, source=self.resolve_source, execute=True)
        try:
            return self.env.compile_expression(expr)(**self.scopes[self.project.name])
        except RenderError:
            raise
        except Exception as exc:
            raise RenderError(f"cannot read {text!r} as a relation: {exc}") from None

    def render_value(self, text: str) -> Any:
        """A config written as Jinja (``+enabled: "{{ var('on', false) }}"`` in dbt_project.yml, or in a
        ``config:`` block): rendered as dbt renders project and property files (``var``, ``env_var``,
        ``target``), and read back as a native value — ``False`` is a boolean, ``'table'`` a string."""
        self._set(execute=False)
        out = self.env.from_string(text).render(self.scopes[self.project.name]).strip()
        try:
            return ast.literal_eval(out)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return {"true": True, "false": False, "none": None, "null": None}.get(out.lower(), out)

    def render_string(self, text: str, node: Node, *, this: Relation) -> str:
        """Render a short Jinja string (a test's argument, a description) in a node's context."""
        if "{{" not in text and "{%" not in text:
            return text
        def ref(*args: str, **kwargs: Any) -> Relation:
            return self.resolve_ref(self.project.versioned(args[-1], kwargs.get("v", kwargs.get("version"))),
                                    args[0] if len(args) > 1 else None)

        self._set(this=this, execute=True, ref=ref, source=self.resolve_source)
        try:
            return self.env.from_string(text).render(self.scopes[self.project.name])
        except Exception as exc:
            raise locate(exc, node, self.project.root) from None

    def call_macro(self, package: str | None, name: str, **kwargs: Any) -> Any:
        """Call a macro (a generic test ``test_<name>``) with keyword arguments."""
        for pkg in ([package] if package else [self.project.name, *self.macros]):
            macro = self.macros.get(pkg or "", {}).get(name)
            if macro is not None:
                return macro(**kwargs)
        raise RenderError(f"unknown macro {name}")

    def find_macro(self, name: str) -> MacroFunc | None:
        for pkg in [self.project.name, *self.macros]:
            if name in self.macros.get(pkg, {}):
                return self.macros[pkg][name]
        return None

    # --- what macros call ----------------------------------------------------------------------
    def _var(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.cli_vars:
            return self.cli_vars[name]
        project_vars = self.project.project_vars()
        if name in project_vars:
            return project_vars[name]
        if default is not _MISSING:
            return default
        raise RenderError(f"var('{name}') has no value",
                          "give it in dbt_project.yml `vars:` or with --vars '{" + name + ": …}'")

    def _warn(self, message: str) -> str:
        self.warnings.append(str(message))
        return ""

    def _doc(self, name: str, *more: str) -> str:
        key = more[0] if more else name
        if key not in self.project.docs:
            raise RenderError(f"doc('{key}'): no docs block of that name")
        return self.project.docs[key]

    def add_view(self, relation: str, sql: str) -> None:
        """A rendered model, made a view of the import's DuckDB only once some macro introspects: binding
        long chains of views is the costly part, and most projects never look."""
        self.pending_views.append((relation, sql))

    def _create_views(self) -> None:
        pending, self.pending_views = self.pending_views, []
        for relation, sql in pending:
            with contextlib.suppress(Exception):  # a view that does not bind is only a model no macro can see
                self.db.execute(f"create or replace view {relation} as {sql}")

    def _run_query(self, sql: str) -> QueryTable:
        self._create_views()
        try:
            cursor = self.db.execute(str(sql))
            rows = cursor.fetchall()
            names = [d[0] for d in cursor.description or []]
        except Exception as exc:  # DuckDB errors: the macro needed data the import does not have
            raise RenderError(f"a macro queries the database at compile time and DuckDB could not answer: "
                              f"{str(exc).splitlines()[0]}",
                              "kiban renders once at import; the tables it reads must be seeds or models "
                              "(sources are empty at import unless their columns are declared)") from None
        return QueryTable(names, rows)

    def _statement(self, name: str | None = None, fetch_result: bool = False, auto_begin: bool = True,
                   caller: Any = None, **kwargs: Any) -> str:
        sql = caller() if caller is not None else ""
        if not str(sql).strip():
            return ""
        table = self._run_query(str(sql))
        if name:
            self.results[name] = {"data": table.rows, "table": table, "response": AttrDict(code="OK")}
        return ""

    def _load_relation(self, relation: Relation) -> Relation | None:
        return relation if self._columns(relation) else None

    def _columns(self, relation: Relation) -> list[Column]:
        self._create_views()
        try:
            rows = self.db.execute(f"describe {relation.render()}").fetchall()
        except Exception:
            return []
        return [Column(r[0], r[1]) for r in rows]


class _Adapter:
    """``adapter``: dispatch, quoting and introspection against the import's DuckDB."""

    def __init__(self, renderer: Renderer) -> None:
        self._r = renderer

    def dispatch(self, macro_name: str, macro_namespace: str | None = None,
                 packages: Any = None) -> Callable[..., Any]:
        r = self._r
        order = _search_order(r.project.config, macro_namespace) if macro_namespace else [r.project.name, *r.macros]
        for package in order:
            macros = r.macros.get(package, {})
            for prefix in ("duckdb__", "default__"):
                if prefix + macro_name in macros:
                    return macros[prefix + macro_name]
        if macro_name in builtins.MACROS:
            return builtins.MACROS[macro_name]
        raise RenderError(f"adapter.dispatch('{macro_name}', '{macro_namespace}'): no duckdb__{macro_name} or "
                          f"default__{macro_name} in {', '.join(order)}",
                          "vendor the package under dbt_packages/ (`dbt deps`) or write the macro in macros/")

    def quote(self, identifier: Any) -> str:
        return '"' + str(identifier).replace('"', '""') + '"'

    def get_columns_in_relation(self, relation: Relation) -> list[Column]:
        columns = self._r._columns(relation)
        if not columns:
            raise RenderError(f"adapter.get_columns_in_relation({relation}): the import cannot see its columns",
                              "kiban renders once at import; the relation must be a seed, a model, or a source "
                              "whose columns (with data_type) are declared")
        return columns

    def get_relation(self, database: Any = None, schema: Any = None, identifier: Any = None) -> Relation | None:
        relation = Relation(str(schema or ""), str(identifier))
        return relation if self._r._columns(relation) else None

    def type(self) -> str:
        return "duckdb"

    def quote_as_configured(self, identifier: Any, quote_key: str) -> str:
        return str(identifier)

    def check_schema_exists(self, database: Any, schema: Any) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        raise RenderError(f"adapter.{name} is not available at import",
                          "kiban renders models once, at import, with no live warehouse")


class _RelationApi:
    def create(self, database: Any = None, schema: Any = None, identifier: Any = None, type: Any = None,
               **kwargs: Any) -> Relation:
        return Relation(str(schema or ""), str(identifier), kind=str(type or "table"))

    def add_ephemeral_prefix(self, name: str) -> str:
        return "__dbt__cte__" + name


def _search_order(config: dict[str, Any], namespace: str) -> list[str]:
    for entry in config.get("dispatch") or []:
        if isinstance(entry, dict) and entry.get("macro_namespace") == namespace:
            return [str(p) for p in entry.get("search_order") or [namespace]]
    return [namespace]


def _return(value: Any) -> None:
    raise _Return(value)


def _compiler_error(message: Any) -> None:
    raise RenderError(f"the project raised a compiler error: {message}")


def _env_var(name: str, default: Any = _MISSING) -> Any:
    if name in os.environ:
        return os.environ[name]
    if default is not _MISSING:
        return default
    raise RenderError(f"env_var('{name}'): the environment variable is not set and has no default")


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(str(text).encode(), usedforsecurity=False).hexdigest()


def locate(exc: Exception, node: Node, root: Path) -> RenderError:
    """The innermost template frame of the traceback says which file and line failed."""
    if isinstance(exc, RenderError):
        error = exc
    elif isinstance(exc, NoSuchVersion):
        error = RenderError(exc.message, exc.hint)
    elif isinstance(exc, jinja2.UndefinedError):
        name = re.search(r"'([^']+)' is undefined", str(exc))
        if name:
            error = RenderError(f"unknown macro or variable '{name.group(1)}'",
                                "define it in macros/, vendor its package under dbt_packages/, or give it with --vars")
        else:
            error = RenderError(str(exc))
    else:
        error = RenderError(f"{type(exc).__name__}: {exc}")
    frames: list[tuple[Path, int]] = []
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".sql") and Path(filename).is_absolute():
            frames.append((Path(filename), tb.tb_lineno))
        tb = tb.tb_next
    in_node = [f for f in frames if f[0] == node.path]
    if frames:
        error.file, error.line = frames[-1]
        if in_node and frames[-1][0] != node.path:
            where = Path(frames[-1][0])
            error.message += f" (in {where.relative_to(root) if where.is_relative_to(root) else where}:{frames[-1][1]})"
            error.file, error.line = in_node[-1]
    else:
        error.file = node.path
    return error
