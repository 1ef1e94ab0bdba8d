"""``kiban import dbt``: a dbt project in, a kiban project of plain SQL out, and a report.

The steps, in order: read the dbt project; load the seeds into an in-memory DuckDB; render every
model once without the database (``execute`` false, as dbt parses) to learn its refs and configs;
place the models in layers; render again in dependency order with ``execute`` true, each model
becoming a view of the DuckDB so that later macros can see its columns; convert tests, sources,
seeds and exposures; write everything into a scratch folder, load it as a kiban project (so what is
written is known to load), and rename it into place. Any problem that would leave a broken project
stops the import before anything is written, each with its dbt file and line.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
import sqlglot.errors
from sqlglot import exp

from kiban.dbt.checks import CONDITION, Sidecar, TestConverter
from kiban.dbt.context import AttrDict, Renderer, RenderError
from kiban.dbt.incremental import time_column
from kiban.dbt.layers import Placement, asset_name, place_model
from kiban.dbt.project import DbtProject, Node, Properties, read_project
from kiban.dbt.relation import Relation
from kiban.dbt.report import EPHEMERAL, Converted, ImportReport, Note, failure
from kiban.dbt.seeds import literal, load_seed, quoted, write_seed
from kiban.dbt.writer import check_target, dump_yaml, scratch_for, staged, write_text
from kiban.errors import KibanError, UsageError, did_you_mean
from kiban.graph.dag import build_graph
from kiban.project.loader import load_project
from kiban.status import Severity

_DURATION_UNITS = {"minute": "minutes", "hour": "hours", "day": "days"}
_Lines = Callable[[tuple[str | int, ...]], int | None]  # a YAML path → its line
_SOURCE_WHERE = ("database", "schema", "identifier", "loaded_at_field")  # a source's keys dbt renders
SQL_HEADER = "-- imported from {rel} by `kiban import dbt`: plain DuckDB SQL, edit it here\n"


@dataclass
class _Model:
    node: Node
    config: dict[str, Any]
    refs: list[str] = field(default_factory=list)
    placement: Placement | None = None
    sql: str = ""
    sidecar: Sidecar = field(default_factory=Sidecar)


class _Import:
    def __init__(self, project: DbtProject, report: ImportReport, cli_vars: dict[str, Any],
                 writes: Path | None = None) -> None:
        import duckdb

        self.project = project
        self.report = report
        self.problems: list[Note] = []
        self.db = duckdb.connect()
        # the project's Jinja runs SQL here (run_query, introspecting macros): it may read the dbt project and
        # write the new one, nothing else — no `copy … to '~/.bashrc'`, no read_text('/etc/…'), no extensions
        allowed = [f"{project.root}/", *([f"{writes}/"] if writes else [])]
        self.db.execute(f"set allowed_directories = [{', '.join(literal(a) for a in allowed)}]")
        self.db.execute("set enable_external_access = false")
        for schema in ("lake", "warehouse", "mart"):
            self.db.execute(f"create schema {schema}")
        self.lake: dict[str, Sidecar] = {}  # lake name → sidecar
        self.seeds: dict[str, str] = {}  # dbt seed name → lake name
        self.sources: dict[tuple[str, str], str] = {}  # (source, table) → lake name
        self.source_props: list[tuple[str, Properties, Node]] = []  # (lake name, properties, node): tests to convert
        self.seed_relations: dict[tuple[str, str], tuple[str, str]] = {}  # dbt's (schema, name) → (seed, lake name)
        self.snapshot_refs: set[str] = set()
        self.disabled: dict[str, str] = {}  # a disabled model's or seed's name → its file
        self.models: dict[str, _Model] = {}
        self.usecases: dict[str, str] = {}
        self.order: list[str] = []  # models in dependency order
        self.renderer = Renderer(project, cli_vars, self.db)
        self.renderer.resolve_ref = self._ref
        self.renderer.resolve_source = self._source

    def problem(self, rel: str, line: int | None, what: str, why: str, hint: str | None = None) -> None:
        self.problems.append(Note(rel, line, what, why, hint))

    # --- configs written as Jinja ------------------------------------------------------------------
    def render_configs(self) -> None:
        """dbt renders dbt_project.yml's configs and the property files' ``config:`` blocks (``var``,
        ``env_var``, ``target``) before it reads them: ``+enabled: "{{ var('load', false) }}"`` is
        ``False``, not a string that a truth test would take for ``True``. Hooks are rendered when they
        run, not here (and kiban runs none)."""
        doc = self.project.config_doc
        for section in ("models", "seeds", "snapshots", "sources", "tests", "data_tests"):
            if isinstance(self.project.config.get(section), dict):
                self._render_tree(self.project.config[section], (section,), "dbt_project.yml",
                                  lambda path: doc.location(path).line if doc else None)
        for props in self.project.sources:  # where a source is: `schema: "{{ target.schema }}_raw"`
            lines = _lines_of(props)
            rel = self.project.rel(props.doc.path)
            for key in _SOURCE_WHERE:
                props.data[key] = self._render_config(props.data.get(key), (key,), rel, lines)
            for j, table in enumerate(props.data.get("tables") or []):
                for key in _SOURCE_WHERE if isinstance(table, dict) else ():
                    table[key] = self._render_config(table.get(key), ("tables", j, key), rel, lines)
        entries = [*self.project.properties.values(), *self.project.sources]
        for props in entries:
            if isinstance(props.data.get("config"), dict):
                self._render_tree(props.data["config"], ("config",), self.project.rel(props.doc.path),
                                  _lines_of(props))

    def _render_tree(self, tree: dict[str, Any], path: tuple[str | int, ...], rel: str, line: _Lines) -> None:
        for key, value in tree.items():
            if str(key).lstrip("+").replace("-", "_") in ("pre_hook", "post_hook"):
                continue
            here = (*path, key)
            if isinstance(value, dict):
                self._render_tree(value, here, rel, line)
            elif isinstance(value, list):
                tree[key] = [self._render_config(v, here, rel, line) for v in value]
            else:
                tree[key] = self._render_config(value, here, rel, line)

    def _render_config(self, value: Any, path: tuple[str | int, ...], rel: str, line: _Lines) -> Any:
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return value
        try:
            return self.renderer.render_value(value)
        except RenderError as exc:
            self.problem(rel, line(path), f"config {str(path[-1]).lstrip('+')}", f"{value!r}: {exc.message}", exc.hint)
        except Exception as exc:  # a Jinja error in a one-line config: say which one
            self.problem(rel, line(path), f"config {str(path[-1]).lstrip('+')}", f"{value!r} cannot be rendered: {exc}")
        return value

    # --- what ref() and source() name --------------------------------------------------------------
    def _ref(self, name: str, package: str | None) -> Relation:
        model = self.models.get(name)
        if model is not None:
            if model.placement is None:
                return Relation("", name)
            return Relation(model.placement.layer, model.placement.name,
                            kind="view" if model.config.get("materialized") == "view" else "table")
        if name in self.seeds:
            return Relation("lake", self.seeds[name])
        if name in self.project.snapshots:
            self.snapshot_refs.add(name)
            return Relation("lake", asset_name(name))
        if name in self.disabled:  # dbt: "depends on a node named 'x' which is disabled"
            raise RenderError(f"ref('{name}'): {self.disabled[name]} is disabled (enabled: false)",
                              "enable it (with --vars, when its `enabled` reads a var), or disable what reads it")
        known = [*self.models, *self.seeds, *self.project.snapshots]
        raise RenderError(f"ref('{name}'): no model, seed or snapshot of that name", did_you_mean(name, known))

    def _source(self, source_name: str, table_name: str) -> Relation:
        key = (str(source_name), str(table_name))
        if key not in self.sources:
            known = [f"{s}.{t}" for s, t in self.sources]
            raise RenderError(f"source('{source_name}', '{table_name}'): no such source table in the property "
                              "files", did_you_mean(f"{source_name}.{table_name}", known))
        return Relation("lake", self.sources[key])

    # --- seeds and sources ---------------------------------------------------------------------
    def read_seeds(self) -> None:
        for name, node in self.project.seeds.items():
            props = self.project.properties.get(("seed", name))
            config = {**self.project.node_config("seeds", node), **((props.data.get("config") or {}) if props else {})}
            if config.get("enabled") is False:
                self.report.skip(node.rel, None, f"seed {name}", "disabled (enabled: false)")
                self.disabled[name] = node.rel
                continue
            lake_name = asset_name(str(config.get("alias") or name))
            try:
                columns = load_seed(self.db, node.path, lake_name, config)
            except Exception as exc:
                self.problem(node.rel, None, f"seed {name}", f"DuckDB could not read the CSV: "
                             f"{str(exc).splitlines()[0]}")
                continue
            self.seeds[name] = lake_name
            sidecar = self._sidecar(props, node, config)
            for column, dtype in columns:
                sidecar.column(column)["type"] = dtype
            self.lake[lake_name] = sidecar
            if props is not None:
                self.source_props.append((lake_name, props, node))
            schema = self._seed_schema(node, config)
            if schema is not None:
                self.seed_relations[(schema.lower(), str(config.get("alias") or name).lower())] = (name, lake_name)
            self.report.converted.append(Converted("seed", name, f"lake.{lake_name}", "types: " + ", ".join(
                f"{c} {t}" for c, t in columns), str(config.get("alias") or "")))

    def read_sources(self) -> None:
        for props in self.project.sources:
            source = str(props.data["name"])
            rel = self.project.rel(props.doc.path)
            for j, table in enumerate(props.data.get("tables") or []):
                if not isinstance(table, dict) or not table.get("name"):
                    continue
                name = str(table["name"])
                if self._source_is_seed(props, table, j):
                    continue
                lake_name = asset_name(f"{source}_{name}")
                if lake_name in self.lake:
                    self.problem(rel, props.line("tables", j), f"source {source}.{name}",
                                 f"lake.{lake_name} is also a seed's or another source's name")
                    continue
                self.sources[(source, name)] = lake_name
                entry = Properties(table, props.doc, (*props.path, "tables", j))
                node = Node("source", name, props.doc.path, rel, (self.project.name, source, name))
                sidecar = self._sidecar(entry, node, {})
                if not sidecar.description and props.data.get("description"):
                    sidecar.description = str(props.data["description"])
                declared = [(str(c["name"]), str(c["data_type"])) for c in table.get("columns") or []
                            if isinstance(c, dict) and c.get("name") and c.get("data_type")]
                if declared:
                    # a type DuckDB does not know: the import just cannot see its columns
                    with contextlib.suppress(Exception):
                        self.db.execute(f"create table lake.{quoted(lake_name)} (" + ", ".join(
                            f"{quoted(c)} {exp.DataType.build(t, dialect='duckdb').sql('duckdb')}"
                            for c, t in declared) + ")")
                self._freshness(props, table, sidecar, rel, entry.line())
                self._external_csv(props, table, source, name, rel, entry.line())
                self.lake[lake_name] = sidecar
                self.source_props.append((lake_name, entry, node))
                self.report.converted.append(Converted("source", f"{source}.{name}", f"lake.{lake_name}",
                                                       "an empty lake folder: collect into it or drop Parquet "
                                                       "files there"))

    def _seed_schema(self, node: Node, config: dict[str, Any]) -> str | None:
        """The schema dbt builds a seed in: the project's ``generate_schema_name`` macro, else dbt's default
        (the target's schema, ``_<schema>`` appended when the seed's config gives one). None when the
        project's macro cannot be called here."""
        custom = config.get("schema")
        target = self.renderer.base["target"]
        macro = self.renderer.find_macro("generate_schema_name")
        if macro is None or macro.package != self.project.name:
            return str(target.schema) if custom is None else f"{target.schema}_{str(custom).strip()}"
        about = AttrDict(resource_type="seed", name=node.name, fqn=list(node.fqn), config=config,
                         package_name=self.project.name, original_file_path=node.rel, path=node.rel)
        try:
            return str(macro(custom, about)).strip() or None
        except Exception as exc:  # the macro reads what the import has no value for: say so, match no source
            self.report.approximate(node.rel, None, f"seed {node.name}", "the project's generate_schema_name "
                                    f"could not be computed for it ({type(exc).__name__}: {exc}): no source is "
                                    "read as this seed")
            return None

    def _source_is_seed(self, props: Properties, table: dict[str, Any], j: int) -> bool:
        """A source table that names the relation a seed is loaded into (jaffle-shop's ``ecom.raw_orders`` is
        the seed ``raw_orders`` in schema ``raw``) is that seed's lake table: in dbt, ``dbt seed`` fills what
        the models read through ``source()``. Its description, columns and tests join the seed's."""
        source, name = str(props.data["name"]), str(table["name"])
        schema = str(table.get("schema") or props.data.get("schema") or source)
        identifier = str(table.get("identifier") or name)
        found = self.seed_relations.get((schema.lower(), identifier.lower()))
        if found is None:
            return False
        seed, lake_name = found
        entry = Properties(table, props.doc, (*props.path, "tables", j))
        node = Node("source", name, props.doc.path, self.project.rel(props.doc.path),
                    (self.project.name, source, name))
        self.sources[(source, name)] = lake_name
        own, seed_sidecar = self._sidecar(entry, node, {}), self.lake[lake_name]
        seed_sidecar.description = seed_sidecar.description or own.description
        for column, described in own.columns.items():
            if described.get("description"):
                seed_sidecar.column(column).setdefault("description", described["description"])
        self._freshness(props, table, seed_sidecar, node.rel, entry.line())
        self.source_props.append((lake_name, entry, node))
        self.report.converted.append(Converted("source", f"{source}.{name}", f"lake.{lake_name}",
                                               f"the relation {schema}.{identifier} that seed {seed} is loaded "
                                               "into: the seed's lake table"))
        return True

    def _external_csv(self, props: Properties, table: dict[str, Any], source: str, name: str, rel: str,
                      line: int | None) -> None:
        """A dbt-duckdb source read from CSV files (``meta: {external_location: …}``): say how kiban collects it
        with inferred types (its lake folder is left empty: the files are the source's, not the project's)."""
        location = next((str(m["external_location"]) for m in (
            (table.get("config") or {}).get("meta"), table.get("meta"), (props.data.get("config") or {}).get("meta"),
            props.data.get("meta")) if isinstance(m, dict) and m.get("external_location")), None)
        if location is None:
            return
        found = re.search(r"""['"]?([^'"()]+\.(?:csv|tsv|txt)(?:\.gz)?)['"]?""", location, re.IGNORECASE)
        if found is None:
            return
        path = found.group(1).replace("{name}", name).replace("{identifier}", str(table.get("identifier") or name))
        self.report.approximate(rel, line, f"source {source}.{name}", f"dbt-duckdb reads it from {path}: kiban "
                                f"collects CSV files with their types inferred — declare it in sources/{source}.yml "
                                f"as `type: files`, table {name} with `path: {path}` and `infer_types: true` "
                                "(docs/collect.md), and `kiban show` lists the inferred types to pin")

    def _freshness(self, props: Properties, table: dict[str, Any], sidecar: Sidecar, rel: str,
                   line: int | None) -> None:
        freshness = table["freshness"] if "freshness" in table else props.data.get("freshness")
        column = table.get("loaded_at_field") or props.data.get("loaded_at_field")
        if not freshness:
            return
        if not column:
            self.report.skip(rel, line, f"freshness of {table['name']}", "no loaded_at_field: kiban's freshness "
                             "check needs the column that says when a row arrived")
            return
        for key, severity in (("warn_after", "warn"), ("error_after", "error")):
            after = freshness.get(key) if isinstance(freshness, dict) else None
            if not isinstance(after, dict) or not after.get("count"):
                continue
            unit = _DURATION_UNITS.get(str(after.get("period", "")))
            if unit is None:
                self.report.skip(rel, line, f"freshness {key} of {table['name']}", f"period {after.get('period')!r}")
                continue
            sidecar.checks.append({"freshness": {"column": str(column), "max_age": f"{after['count']} {unit}"},
                                   "severity": severity, "name": f"freshness_{severity}"})

    def _sidecar(self, props: Properties | None, node: Node, config: dict[str, Any]) -> Sidecar:
        sidecar = Sidecar()
        data = props.data if props else {}
        this = Relation("", node.name)
        description = str(data.get("description") or "")
        try:
            sidecar.description = self.renderer.render_string(description, node, this=this).strip()
        except RenderError as exc:
            self.report.approximate(node.rel, props.line("description") if props else None, "description",
                                    f"kept as written: {exc.message}")
            sidecar.description = description
        meta = {**(config.get("meta") or {}), **(data.get("meta") or {}), **((data.get("config") or {}).get("meta")
                                                                            or {})}
        owner = meta.pop("owner", None)
        if owner:
            sidecar.owner = str(owner)
        if meta and props is not None:
            self.report.approximate(node.rel, props.line("meta"), f"meta of {node.name}",
                                    f"kiban sidecars have no meta; not kept: {', '.join(sorted(meta))}")
        tags = [*(config.get("tags") or []), *(data.get("tags") or [])]
        sidecar.tags = [asset_name(str(t)) for t in dict.fromkeys(tags)]
        for column in data.get("columns") or []:
            if isinstance(column, dict) and column.get("name"):
                entry = sidecar.column(str(column["name"]))
                text = str(column.get("description") or "")
                with contextlib.suppress(RenderError):
                    text = self.renderer.render_string(text, node, this=this).strip()
                if text:
                    entry["description"] = text
        return sidecar

    # --- models --------------------------------------------------------------------------------
    def parse_models(self) -> None:
        """First pass, as dbt parses: ``execute`` false, to learn refs and in-file configs."""
        for name, node in self.project.models.items():
            props = self.project.properties.get(("model", name))
            config = {**self.project.node_config("models", node),
                      **((props.data.get("config") or {}) if props else {})}
            self.models[name] = _Model(node, config)
        for name, model in list(self.models.items()):
            try:
                rendered = self.renderer.render(model.node, this=Relation("", name), execute=False,
                                                config=model.config)
            except RenderError as exc:
                self._render_problem(exc, model.node)
                continue
            model.config = rendered.config
            model.refs = [r for r, _ in rendered.refs if r in self.models]
        for name, model in list(self.models.items()):
            if model.config.get("enabled") is False:
                self.report.skip(model.node.rel, None, f"model {name}", "disabled (enabled: false)")
                self.disabled[name] = model.node.rel
                del self.models[name]

    def _render_problem(self, exc: RenderError, node: Node) -> None:
        rel = self.project.rel(exc.file) if exc.file else node.rel
        self.problem(rel, exc.line, f"model {node.name}", exc.message, exc.hint)

    def place(self) -> list[str]:
        read = {r for m in self.models.values() for r in m.refs}
        seen: dict[str, str] = {}
        for name, model in self.models.items():
            placement = place_model(model.node.fqn[1:-1], model.config, name in read, name)
            model.placement = placement
            if "its folder says mart" in placement.why:
                self.report.approximate(model.node.rel, None, f"model {name}",
                                        f"placed in warehouse: {placement.why}")
            if placement.key in seen:
                self.problem(model.node.rel, None, f"model {name}", f"both it and {seen[placement.key]} would "
                             f"be {placement.key}")
            seen[placement.key] = name
        return self._order()

    def _order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " → ".join([*path[path.index(name):], name])
                self.problem(self.models[name].node.rel, None, f"model {name}", f"dependency cycle: {cycle}")
                return
            state[name] = 1
            for ref in self.models[name].refs:
                if ref in self.models:
                    visit(ref, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self.models:
            visit(name, [])
        return order

    def render_models(self, order: list[str]) -> None:
        """Second pass, as dbt compiles: ``execute`` true, dependencies first."""
        self.order = order
        for name in order:
            model = self.models[name]
            assert model.placement is not None
            this = Relation(model.placement.layer, model.placement.name)
            try:
                rendered = self.renderer.render(model.node, this=this, execute=True, config=model.config)
            except RenderError as exc:
                self._render_problem(exc, model.node)
                continue
            model.config = rendered.config
            sql = rendered.sql.strip().rstrip(";").strip()
            if not sql:
                self.problem(model.node.rel, None, f"model {name}", "renders to no SQL")
                continue
            model.sql = sql
            self.renderer.add_view(this.render(), sql)  # for macros that introspect later models
            self._materialization(model, this)
            for hook in ("pre_hook", "post_hook", "pre-hook", "post-hook"):
                if model.config.get(hook):
                    self.report.skip(model.node.rel, None, f"{hook} of {name}", "kiban runs no hooks around a "
                                     "build; grants and the like belong to the warehouse's administration")
            props = self.project.properties.get(("model", name))
            model.sidecar = self._sidecar(props, model.node, model.config)
            model.sidecar.extra.update(self._extra(model, this, props))
            detail = str(model.sidecar.extra.get("materialized", "table"))
            self.report.converted.append(Converted("model", name, this.render(), EPHEMERAL if model.config.get(
                "materialized") == "ephemeral" else detail, str(model.config.get("alias") or "")))

    def _materialization(self, model: _Model, this: Relation) -> None:
        materialized = str(model.config.get("materialized") or "view")
        rel = model.node.rel
        if materialized in ("table", "view"):
            model.config["_kiban"] = {"materialized": materialized}
            return
        if materialized == "incremental":
            try:
                rendered = self.renderer.render(model.node, this=this, execute=True, incremental=True,
                                                config=dict(model.config))
                column = time_column(rendered.sql, this.render())
            except RenderError:
                column = None
            if column:
                model.config["_kiban"] = {"materialized": "incremental", "time_column": column, "grain": "day"}
                key = model.config.get("unique_key")
                self.report.approximate(rel, None, f"model {model.node.name}",
                                        f"incremental: kiban re-processes the day partitions of {column} from the "
                                        "newest processed day minus one (dbt added rows newer than max("
                                        f"{column})){'; unique_key ' + str(key) + ' is not used' if key else ''}")
                return
            self.report.approximate(rel, None, f"model {model.node.name}", "incremental without a "
                                    "`col > (select max(col) from this)` filter: imported as a table")
            model.config["_kiban"] = {"materialized": "table"}
            return
        why = "ephemeral models become views" if materialized == "ephemeral" else \
            f"materialized '{materialized}' is imported as a table"
        self.report.approximate(rel, None, f"model {model.node.name}", why)
        model.config["_kiban"] = {"materialized": "view" if materialized == "ephemeral" else "table"}

    def _extra(self, model: _Model, this: Relation, props: Properties | None) -> dict[str, Any]:
        extra = dict(model.config.pop("_kiban"))
        contract = model.config.get("contract") or {}
        if isinstance(contract, dict) and contract.get("enforced") and props is not None:
            for column in props.data.get("columns") or []:
                if isinstance(column, dict) and column.get("name") and column.get("data_type"):
                    model.sidecar.column(str(column["name"]))["type"] = str(column["data_type"])
            model.sidecar.checks.append("contract")
        return extra

    # --- tests, exposures ----------------------------------------------------------------------
    def convert_tests(self) -> None:
        converter = TestConverter(self.renderer, self.report)
        for name, model in self.models.items():
            props = self.project.properties.get(("model", name))
            if props is not None and model.placement is not None and model.sql:
                this = Relation(model.placement.layer, model.placement.name)
                converter.convert_entry(props, model.node, this, model.sidecar)
        for lake_name, props, node in self.source_props:
            converter.convert_entry(props, node, Relation("lake", lake_name), self.lake[lake_name])
        for test in self.project.singular_tests:
            self._singular(test)
        self._untangle_relationships()

    def gate_views(self) -> None:
        """A view cannot be gated by a blocking check in kiban (it reads its inputs whenever it is queried), where
        dbt builds the view and tests it afterwards: a view with a test of severity error becomes a table, so the
        test gates what is published. Reported as an approximation."""
        for model in self.models.values():
            if model.sidecar.extra.get("materialized") != "view":
                continue
            checks = [*model.sidecar.checks, *(c for col in model.sidecar.columns.values()
                                               for c in col.get("checks", ()))]
            if any(_blocking(check) for check in checks):
                model.sidecar.extra["materialized"] = "table"
                self.report.approximate(model.node.rel, None, f"model {model.node.name}",
                                        "a view with tests of severity error is imported as a table: kiban's "
                                        "blocking checks gate a table's publish, and cannot gate a view")

    def _untangle_relationships(self) -> None:
        """kiban makes a model's build wait for the model its relationships check names, so the check sees the
        new version; a check towards a model built from the checked one (or a circle of such waits) is refused.
        dbt has no such rule: those checks become ``sql`` checks of the target model, which is built after the
        checked one and so judges both new versions."""
        keys = {m.placement.key: m for m in self.models.values() if m.placement is not None and m.sql}
        deps: dict[str, set[str]] = {
            key: {self.models[r].placement.key for r in m.refs  # type: ignore[union-attr]
                  if r in self.models and self.models[r].placement is not None} for key, m in keys.items()}

        def reaches(start: str, goal: str) -> bool:
            seen, todo = set(), [start]
            while todo:
                here = todo.pop()
                if here == goal:
                    return True
                if here not in seen:
                    seen.add(here)
                    todo.extend(deps.get(here, ()))
            return False

        self._untangle_sql_checks(keys, deps, reaches)
        for key, model in keys.items():
            for column in model.sidecar.columns.values():
                for i, check in enumerate(column.get("checks", [])):
                    if not (isinstance(check, dict) and isinstance(check.get("relationships"), dict)):
                        continue
                    target = str(check["relationships"]["to"])
                    if target not in keys:
                        continue
                    if not reaches(target, key):
                        deps[key].add(target)
                        continue
                    field_name = str(check["relationships"]["field"])
                    options = {k: v for k, v in check.items() if k != "relationships"}
                    sql = (f"select child.* from {key} as child left join {target} as parent "
                           f"on child.{column['name']} = parent.{field_name} "
                           f"where child.{column['name']} is not null and parent.{field_name} is null")
                    column["checks"][i] = None  # judged from the other side: by the target, built after key
                    name = f"relationships_{key.split('.')[1]}_{column['name']}"
                    keys[target].sidecar.checks.append({"sql": sql, "name": name[:120], **options})
                    self.report.approximate(model.node.rel, None, f"relationships test {column['name']} → {target}",
                                            f"{target} is built after {key}, so the check is a sql check of "
                                            f"{target} (it judges both new versions)")
                column["checks"] = [c for c in column.get("checks", []) if c is not None]
                if not column["checks"]:
                    column.pop("checks")

    def _untangle_sql_checks(self, keys: dict[str, _Model], deps: dict[str, set[str]],
                             reaches: Callable[[str, str], bool]) -> None:
        """A rendered test that reads another model (dbt_expectations' ``…_to_equal_other_table``) waits for it;
        when that model is built from the tested one (or waits for it through another such check), the check
        moves to the model built last among those it reads, which sees every new version they make (as a
        singular test does). The models built last go first, so two tests reading each other's models end on
        the later one."""
        built = {m.placement.key: self.order.index(name) for name, m in self.models.items()
                 if m.placement is not None and name in self.order}
        for key in sorted(keys, key=lambda k: built.get(k, -1), reverse=True):
            model = keys[key]
            for check in list(model.sidecar.checks):
                if not (isinstance(check, dict) and isinstance(check.get("sql"), str)):
                    continue
                try:
                    tree = sqlglot.parse_one(check["sql"], read="duckdb")
                except sqlglot.errors.ParseError:
                    continue
                reads = {f"{t.db}.{t.name}".lower() for t in tree.find_all(exp.Table)} & set(keys)
                if not any(other != key and reaches(other, key) for other in reads):
                    deps[key] |= reads - {key}
                    continue
                last = max(reads | {key}, key=lambda k: built.get(k, -1))
                model.sidecar.checks.remove(check)
                keys[last].sidecar.checks.append(check)
                deps[last] |= reads - {last}
                self.report.approximate(model.node.rel, None, f"test {check.get('name', '')}",
                                        f"it reads {last}, which is built from {key}: it is a check of {last}, so "
                                        "it judges both new versions")

    def _singular(self, test: Node) -> None:
        self.report.tests += 1
        try:
            rendered = self.renderer.render(test, this=Relation("", test.name), execute=True)
        except RenderError as exc:
            self.report.skip(test.rel, exc.line, f"test {test.name}", exc.message)
            return
        sidecar: Sidecar | None = None
        # the model built last among those it reads judges it, so the others' new versions exist by then
        models = sorted((self.order.index(r), r) for r, _ in rendered.refs if r in self.models and self.models[r].sql)
        if models:
            sidecar = self.models[models[-1][1]].sidecar
        for ref, _ in rendered.refs:
            if sidecar is None and ref in self.seeds:
                sidecar = self.lake[self.seeds[ref]]
        if sidecar is None and rendered.sources:
            sidecar = self.lake.get(self.sources.get(rendered.sources[0], ""))
        if sidecar is None:
            self.report.skip(test.rel, None, f"test {test.name}", "reads no model, seed or source to attach it to")
            return
        config = {**self.project.test_config(test.fqn), **rendered.config}
        if config.get("enabled") is False:
            self.report.skip(test.rel, None, f"test {test.name}", "disabled (enabled: false)")
            return
        sql = rendered.sql.strip().rstrip(";")
        warn = str(config.get("severity", "")).lower() == "warn"
        # dbt's verdict: failures (count(*) of the rows) against error_if (warn_if of a warn test), `!= 0` unless set
        condition = str(config.get("warn_if" if warn else "error_if") or "!= 0").strip()
        if condition.replace(" ", "") not in ("!=0", ">0"):
            if not CONDITION.fullmatch(condition):
                self.report.approximate(test.rel, None, f"test {test.name}", f"condition {condition!r} is not a "
                                        "comparison with a number; the check fails on any row")
            else:
                sql = (f"select * from (select count(*) as failures from ({sql}) as dbt_internal_test) "
                       f"where failures {condition}")
        if config.get("warn_if") and not warn:
            self.report.approximate(test.rel, None, f"test {test.name}", "warn_if is dropped: a kiban check has "
                                    "one severity")
        check: dict[str, Any] = {"sql": sql, "name": asset_name(test.name)}
        if warn:
            check["severity"] = Severity.WARN
        sidecar.checks.append(check)
        self.report.checks += 1

    def convert_exposures(self) -> None:
        for props in self.project.exposures:
            data = props.data
            name = asset_name(str(data["name"]))
            rel = self.project.rel(props.doc.path)
            assets = []
            for dep in data.get("depends_on") or []:
                try:
                    assets.append(self.renderer.render_relation(str(dep), None))
                except RenderError as exc:
                    self.report.skip(rel, props.line("depends_on"), f"exposure {name}", exc.message)
            if not assets:
                self.report.skip(rel, props.line(), f"exposure {name}", "depends on no model")
                continue
            owner = data.get("owner") or {}
            consumer: dict[str, Any] = {"name": str(owner.get("name") or data.get("label") or name)}
            if owner.get("email"):
                consumer["contact"] = [f"email:{owner['email']}"]
            usecase = {"description": str(data.get("description") or data.get("label") or name).strip(),
                       **({"owner": str(owner.get("email") or owner.get("name"))} if owner else {}),
                       "consumers": [consumer], "assets": assets,
                       "need": {"by": "23:59", "on": "every_day", "data_through": "none", "checks": "all"}}
            header = (f"# Imported from the dbt exposure {data['name']} ({rel}).\n"
                      "# TODO(kiban import dbt): dbt exposures have no deadline. `need.by: \"23:59\"` below is a\n"
                      "# PLACEHOLDER (the latest moment of a day, so nothing is reported late before you decide):\n"
                      "# set when the people who use it need it, and on which days (docs/service-levels.md).\n")
            if data.get("url"):
                header += f"# dbt url: {data['url']}\n"
            self.usecases[name] = dump_yaml(usecase, header)
            self.report.converted.append(Converted("exposure", str(data["name"]), f"usecases/{name}.yml",
                                                   "deadline to fill"))
            self.report.approximate(rel, props.line(), f"exposure {data['name']}",
                                    "its use case's deadline (need.by) is a placeholder: set it")

    def snapshots(self) -> None:
        for name, node in self.project.snapshots.items():
            self.report.skip(node.rel, _line_of(node.text, "snapshot"), f"snapshot {name}",
                             "kiban keeps history when it collects: declare the source in sources/NAME.yml with "
                             "`history: scd2` and read lake.NAME_TABLE_history"
                             + (" (models that ref it read the empty lake folder lake/" + asset_name(name) + "/)"
                                if name in self.snapshot_refs else ""))

    # --- writing -------------------------------------------------------------------------------
    def write(self, target: Path) -> None:
        with staged(target) as root:
            project_name = re.sub(r"[^A-Za-z0-9_-]", "_", self.project.name).lstrip("-0123456789") or "imported"
            write_text(root, "kiban.yml", f"# Imported from the dbt project {self.project.name} by `kiban import dbt`"
                       f" (see dbt_import_report.md).\nname: {project_name}\ntimezone: UTC\n")
            write_text(root, ".gitignore", "kiban.duckdb*\n.kiban/\n")
            for _dbt_name, lake_name in self.seeds.items():
                write_seed(self.db, lake_name, root / "lake" / lake_name)
            for lake_name in [*self.sources.values(), *(asset_name(s) for s in self.snapshot_refs)]:
                write_text(root, f"lake/{lake_name}/README.txt", "Put this table's Parquet files here, or collect "
                           "it with a source in sources/ (docs/collect.md).\n")
            for lake_name, sidecar in self.lake.items():
                body = sidecar.as_yaml()
                if body:
                    write_text(root, f"models/lake/{lake_name}.yml", dump_yaml(body))
            for model in self.models.values():
                if model.placement is None or not model.sql:
                    continue
                base = f"models/{model.placement.layer}/{model.placement.name}"
                write_text(root, base + ".sql", SQL_HEADER.format(rel=model.node.rel) + model.sql + "\n")
                write_text(root, base + ".yml", dump_yaml(model.sidecar.as_yaml()))
            for name, text in self.usecases.items():
                write_text(root, f"usecases/{name}.yml", text)
            write_text(root, "dbt_import_report.md", "# dbt import report\n\n```text\n" + self.report.text()
                       + "\n```\n")
            try:  # what is written loads as a kiban project, or nothing is written
                build_graph(load_project(root))
            except KibanError as exc:
                raise KibanError(f"the imported project does not load; nothing was written:\n{exc}",
                                 "this is a defect of the import; please report it with the dbt project") from None
            shutil.rmtree(root / ".kiban", ignore_errors=True)  # the loader's cache, not part of the project


def _lines_of(props: Properties) -> _Lines:
    return lambda path: props.line(*path)


def _blocking(check: Any) -> bool:
    """Whether a converted check is blocking: anything but one that says ``severity: warn`` somewhere in it."""
    if isinstance(check, dict):
        if str(check.get("severity", "")).lower() == "warn":
            return False
        return all(_blocking(v) for v in check.values() if isinstance(v, dict))
    return True


def _line_of(text: str, word: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if word in line:
            return number
    return None


def parse_vars(text: str | None) -> dict[str, Any]:
    """``--vars '{key: value}'`` as dbt takes it (YAML or JSON)."""
    if not text:
        return {}
    import yaml


    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--vars is not YAML: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--vars takes a mapping, e.g. --vars '{start_date: 2024-01-01}'")
    return value


def import_dbt(dbt_folder: Path, new_folder: Path, cli_vars: dict[str, Any] | None = None) -> ImportReport:
    """Import the dbt project at ``dbt_folder`` as a new kiban project at ``new_folder``."""
    started = time.perf_counter()
    new_folder = new_folder.absolute()
    check_target(new_folder)
    project = read_project(dbt_folder)
    report = ImportReport(str(dbt_folder), str(new_folder))
    work = _Import(project, report, dict(cli_vars or {}), scratch_for(new_folder))
    try:
        work.render_configs()
        work.read_seeds()
        work.read_sources()
        work.parse_models()
        order = work.place()
        if not work.problems:
            work.render_models(order)
        if not work.problems:
            work.convert_tests()
            work.gate_views()
            work.convert_exposures()
            work.snapshots()
            for file, line, what, why in project.unsupported:
                report.skip(file, line, what, why)
        if work.problems:
            raise failure(work.problems, project.root)
        report.seconds = time.perf_counter() - started
        work.write(new_folder)
    finally:
        work.db.close()
    report.seconds = time.perf_counter() - started
    return report
