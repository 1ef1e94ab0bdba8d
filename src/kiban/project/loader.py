"""Loading a project folder into an immutable :class:`Project`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from kiban import envref
from kiban.assetkey import KeyResolver, lake_views
from kiban.errors import ConfigError, Location, ProjectError, ProjectErrors, did_you_mean
from kiban.project.asset import Asset
from kiban.project.config import BUILD_KEYS, LAYERS, ModelConfig, ProjectConfig
from kiban.project.initiative import Initiative, check_metrics, load_initiatives
from kiban.project.jobs import check_jobs, check_limits
from kiban.project.macros import Macro, load_macros
from kiban.project.pasted import refuse_templating
from kiban.project.usecase import UseCase, UseCaseConfig
from kiban.project.yamlfile import YamlDoc, YamlPath, load_yaml, read_config, validate, yaml_files

if TYPE_CHECKING:
    from kiban.collect.spec import SourceSpec

PROJECT_FILE = "kiban.yml"
MODEL_LAYERS = ("warehouse", "mart")
LAKE_SIDECARS = "lake"  # models/lake/<table>.yml describes (and checks) the lake table lake/<table>/


@dataclass(frozen=True)
class Project:
    """A loaded project: its configuration and its assets (not yet wired into a graph). Immutable: its fields
    cannot be set, its mappings are read-only, and its assets, specs and settings are frozen."""

    root: Path
    config: ProjectConfig
    assets: Mapping[str, Asset]
    usecases: Mapping[str, UseCase] = field(default_factory=dict)
    sources: Mapping[str, SourceSpec] = field(default_factory=dict)  # sources/NAME.yml (kiban.collect.spec)
    initiatives: Mapping[str, Initiative] = field(default_factory=dict)  # initiatives/NAME.yml (kiban.value)
    macros: Mapping[str, Macro] = field(default_factory=dict)  # macros/*.sql: DuckDB macros every model may call

    def __post_init__(self) -> None:
        # Immutable for real: every collection a read-only view of its own copy. Nothing that reads a project
        # (the graph, a run, the console) can write into it; what they compute lives in their own structures
        # (``Graph.python_inputs``). tests/test_project_immutable.py tries.
        for name in ("assets", "usecases", "sources", "initiatives", "macros"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def name(self) -> str:
        return self.config.name

    def source_tables(self) -> dict[str, tuple[str, str]]:
        """Every collected lake asset: ``lake.<source>_<table>`` → (source, table)."""
        return {f"lake.{s}_{t}".lower(): (s, t) for s, spec in self.sources.items() for t in spec.tables}

    def lake_views(self) -> dict[str, str]:
        """The extra views of collected tables: ``lake.x_latest`` (with a primary key) and ``lake.x_history``
        (history: scd2), each → the asset ``lake.x`` it is derived from."""
        views: dict[str, str] = {}
        for key, (source, table) in self.source_tables().items():
            spec = self.sources[source].tables[table]
            views.update(lake_views(key, latest=bool(spec.primary_key), history=spec.history == "scd2"))
        return views

    @property
    def lake_dir(self) -> Path:
        return (self.root / self.config.lake).resolve()

    @property
    def state_dir(self) -> Path:
        return self.root / ".kiban"

    @property
    def warehouse_url(self) -> str:
        return resolve_url(self.config.warehouse, self.root)

    @property
    def state_url(self) -> str:
        return resolve_url(self.config.state, self.root)


def resolve_url(url: str, root: Path) -> str:
    """Expand ``env:NAME`` and make file URLs (``duckdb:///x``, ``sqlite:///x``) relative to the project."""
    url = envref.resolve(url, lambda name: ConfigError(
        f"environment variable {name} is not set (the project refers to env:{name})"))
    for scheme in ("duckdb:///", "sqlite:///"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            if rest and rest != ":memory:" and not rest.startswith("/"):
                return scheme + str((root / rest).resolve())
    return url


def find_project_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` that holds ``kiban.yml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ProjectError(
        f"no {PROJECT_FILE} found in {start} or any folder above it",
        hint="run inside a project, pass --project DIR, or create one with `kiban init DIR`",
    )


def load_project(start: Path | str = ".") -> Project:
    """Load and validate the project at or above ``start``; all problems are reported at once."""
    root = find_project_root(Path(start))
    config = validate(load_yaml(root / PROJECT_FILE), ProjectConfig)
    errors: list[ProjectError] = []
    assets: dict[str, Asset] = {}
    for asset in _lake_assets(root, config):
        assets[asset.key] = asset
    for asset in _lake_sidecars(root, assets, errors):
        assets[asset.key] = asset
    sources = _sources(root, config, assets, errors)  # sources/NAME.yml: collected lake tables
    for asset in _model_assets(root, errors):
        if asset.key in assets:
            other = assets[asset.key]
            errors.append(ProjectError(f"two models are both named {asset.key} (the other is {other.path})",
                                       Location(asset.path)))
            continue
        assets[asset.key] = asset
    usecases = _usecases(root, config, assets, errors)
    macros = load_macros(root, errors)
    _check_declarations(config, assets, errors)
    if config.metrics:
        check_metrics(config, assets, load_yaml(root / PROJECT_FILE), errors)
    initiatives = load_initiatives(root, config, (*BUILTIN_CALENDARS, *config.calendars), assets, usecases,
                                   errors)
    if config.oncall is not None or config.review_notify:
        _check_oncall(root, config, errors)
    if config.jobs:
        check_jobs(load_yaml(root / PROJECT_FILE), config.jobs, assets, usecases,
                   (*BUILTIN_CALENDARS, *config.calendars), errors)
    if config.limits:
        check_limits(load_yaml(root / PROJECT_FILE), config.limits, assets, errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    return Project(root=root, config=config, assets=dict(sorted(assets.items())), usecases=usecases,
                   sources=sources, initiatives=initiatives, macros=macros)


BUILTIN_CALENDARS = ("jp", "none")


def _usecases(root: Path, config: ProjectConfig, assets: dict[str, Asset],
              errors: list[ProjectError]) -> dict[str, UseCase]:
    """Load ``usecases/*.yml``; asset, calendar and channel names must exist (errors name file:line)."""
    folder = root / "usecases"
    if not folder.is_dir():
        return {}
    calendars = (*BUILTIN_CALENDARS, *config.calendars)
    if config.calendar not in calendars:
        errors.append(ProjectError(f"unknown calendar '{config.calendar}'",
                                   load_yaml(root / PROJECT_FILE).location(("calendar",)),
                                   did_you_mean(config.calendar, calendars)
                                   or f"built-in calendars: {', '.join(BUILTIN_CALENDARS)}"))
    resolver = KeyResolver(assets)  # what SQL, the checks and the console resolve with
    found: dict[str, UseCase] = {}
    for path in yaml_files(folder):
        read = read_config(path, UseCaseConfig, errors)
        if read is None:
            continue
        doc, cfg = read
        if path.stem in found:
            errors.append(ProjectError(f"two use cases are both named {path.stem} (the other is "
                                       f"{found[path.stem].path.name})", Location(path)))
            continue
        keys: list[str] = []
        for i, name in enumerate(cfg.assets):
            key = resolver.key(name)
            if key is not None:
                keys.append(key)
                continue
            problem, hint = resolver.explain(name)
            errors.append(ProjectError(problem, doc.location(("assets", i)), hint))
        calendar = cfg.need.calendar
        if calendar is not None and calendar not in calendars:  # the project's default is checked above
            errors.append(ProjectError(f"unknown calendar '{calendar}'", doc.location(("need", "calendar")),
                                       did_you_mean(calendar, calendars)
                                       or f"built-in calendars: {', '.join(BUILTIN_CALENDARS)}; "
                                          "define others under `calendars:` in kiban.yml"))
        routes: list[tuple[YamlPath, str]] = [(("owner_notify", i), c) for i, c in enumerate(cfg.owner_notify)]
        routes += [(("consumers", j, "notify", i), c) for j, who in enumerate(cfg.consumers)
                   for i, c in enumerate(who.notify)]
        for where, channel in routes:
            if channel not in config.channels:
                errors.append(ProjectError(f"unknown channel '{channel}'", doc.location(where),
                                           did_you_mean(channel, config.channels)
                                           or "define channels under `channels:` in kiban.yml"))
        cfg = cfg.model_copy(update={"assets": tuple(keys)})
        found[path.stem] = UseCase(name=path.stem, path=path, config=cfg)
    return found


def _check_oncall(root: Path, config: ProjectConfig, errors: list[ProjectError]) -> None:
    """The rotation's calendar and every channel it or the weekly review names must exist (file:line)."""
    doc = load_yaml(root / PROJECT_FILE)
    routes: list[tuple[YamlPath, str]] = [(("review_notify", i), c) for i, c in enumerate(config.review_notify)]
    oncall = config.oncall
    if oncall is not None:
        routes += [(("oncall", "notify", i), c) for i, c in enumerate(oncall.notify)]
        routes += [(("oncall", "people", j, "notify", i), c) for j, person in enumerate(oncall.people)
                   for i, c in enumerate(person.notify)]
        calendars = (*BUILTIN_CALENDARS, *config.calendars)
        if oncall.calendar is not None and oncall.calendar not in calendars:
            errors.append(ProjectError(f"unknown calendar '{oncall.calendar}'", doc.location(("oncall", "calendar")),
                                       did_you_mean(oncall.calendar, calendars)))
    for where, channel in routes:
        if channel not in config.channels:
            errors.append(ProjectError(f"unknown channel '{channel}'", doc.location(where),
                                       did_you_mean(channel, config.channels)
                                       or "define channels under `channels:` in kiban.yml"))


def _lake_assets(root: Path, config: ProjectConfig) -> list[Asset]:
    lake = root / config.lake
    if not lake.is_dir():
        return []
    return [
        Asset(layer="lake", name=entry.name.lower(), path=entry)
        for entry in sorted(lake.iterdir())
        if entry.is_dir() and not entry.name.startswith((".", "_"))
    ]


def _lake_sidecars(root: Path, assets: dict[str, Asset], errors: list[ProjectError]) -> list[Asset]:
    """``models/lake/<table>.yml``: the description, columns and checks of the lake table ``lake/<table>/``.

    Lake tables have no SQL, so their sidecars live apart from the data (which may be elsewhere, and is
    often not in version control). They take a model sidecar's keys except those about building.
    """
    folder = root / "models" / LAKE_SIDECARS
    if not folder.is_dir():
        return []
    found: list[Asset] = []
    lake_names = [a.name for a in assets.values() if a.layer == "lake"]
    for path in sorted([*folder.glob("*"), *folder.glob("*/**/*")]):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix not in (".yml", ".yaml"):
            errors.append(ProjectError("models/lake/ holds only sidecars of lake tables (<table>.yml)",
                                       Location(path), "SQL models live in models/warehouse/ or models/mart/"))
            continue
        asset = assets.get(f"lake.{path.stem.lower()}")
        if asset is None or path.parent != folder:
            errors.append(ProjectError(f"sidecar {path.name} describes no lake table: there is no folder "
                                       f"lake/{path.stem}/", Location(path),
                                       did_you_mean(path.stem, lake_names) or "name it after a folder in lake/"))
            continue
        try:
            doc = load_yaml(path)
            extra = [k for k in BUILD_KEYS if isinstance(doc.data, dict) and k in doc.data]
            if extra:
                raise ProjectError(f"'{extra[0]}' is about building a model; a lake table's sidecar takes "
                                   "description, owner, tags, columns and checks", doc.location((extra[0],)))
            config = validate(doc, ModelConfig)
        except (ProjectError, ProjectErrors) as exc:
            errors.extend(exc.errors)
            continue
        found.append(Asset(layer="lake", name=asset.name, path=asset.path, config=config, config_path=path))
    return found


def _check_declarations(config: ProjectConfig, assets: dict[str, Asset], errors: list[ProjectError]) -> None:
    """What a sidecar's checks name must exist: other assets (relationships), calendars (freshness);
    check names must differ. Columns are checked when the checks run, against the relation itself."""
    from kiban.checks.spec import Contract, Freshness, Relationships, declared

    resolver = KeyResolver(assets)  # what SQL, the checks and the console resolve with
    calendars = (*BUILTIN_CALENDARS, *config.calendars)
    for asset in assets.values():
        cfg = asset.config
        if not cfg.has_checks or asset.config_path is None:
            continue
        found, named = declared(cfg.columns, cfg.checks)
        problems: list[tuple[YamlPath, str, str | None]] = [(path, message, None) for path, message in named]
        for item in found:
            spec = item.spec
            if isinstance(spec, Relationships):
                target = spec.target
                key = resolver.key(target)
                if key is None:
                    problem, hint = resolver.explain(target)
                    problems.append((item.path, f"relationships: {problem}", hint))
                elif key == asset.key:
                    problems.append((item.path, "relationships: an asset cannot reference itself", None))
            elif isinstance(spec, Freshness) and spec.calendar is not None and spec.calendar not in calendars:
                problems.append((item.path, f"freshness: unknown calendar '{spec.calendar}'",
                                 did_you_mean(spec.calendar, calendars)
                                 or f"built-in calendars: {', '.join(BUILTIN_CALENDARS)}"))
            elif isinstance(spec, Contract) and not cfg.columns:
                problems.append((item.path, "a contract is the columns listed under `columns:` (with their "
                                 "`type:`); this sidecar lists none", None))
        if problems:
            doc = load_yaml(asset.config_path)
            # a collected table's checks sit under tables.<table> of its sources/NAME.yml
            within: YamlPath = ("tables", asset.path.name) if asset.config_path.parent.name == "sources" else ()
            errors.extend(ProjectError(message, doc.location((*within, *path)), hint)
                          for path, message, hint in problems)


def _model_assets(root: Path, errors: list[ProjectError]) -> list[Asset]:
    models = root / "models"
    if not models.is_dir():
        return []
    found: list[Asset] = []
    for folder in sorted(models.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if folder.name == LAKE_SIDECARS:
            continue  # sidecars of lake tables: _lake_sidecars
        if folder.name not in MODEL_LAYERS:
            hint = did_you_mean(folder.name, MODEL_LAYERS) or (
                "models live in models/warehouse/ or models/mart/ (and sidecars of lake tables in models/lake/)")
            errors.append(ProjectError(f"'{folder.name}' is not a layer", Location(folder), hint))
            continue
        for sql_path in sorted(folder.rglob("*.sql")):
            try:
                found.append(_load_model(folder.name, sql_path))
            except (ProjectError, ProjectErrors) as exc:
                errors.extend(exc.errors)
        python_sidecars: set[Path] = set()  # Python models: one asset per decorated function (kiban.python)
        for py_path in sorted(p for p in folder.rglob("*.py") if not p.name.startswith(("_", "."))
                              and "__pycache__" not in p.parts):
            try:
                found.extend(_python_models(folder.name, py_path, python_sidecars))
            except (ProjectError, ProjectErrors) as exc:
                errors.extend(exc.errors)
        described: dict[str, Path] = {}  # model → the file of several that describes it
        for yml in sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")]):
            if not yml.with_suffix(".sql").exists() and yml not in python_sidecars:
                doc = _yaml_or_error(yml, errors)
                if doc is not None and isinstance(doc.data, dict) and "models" in doc.data:
                    _describe_several(doc, folder.name, found, described, errors)
                    continue
                if doc is None:
                    continue
                names = [p.stem for p in folder.rglob("*.sql")]
                errors.append(ProjectError(f"sidecar {yml.name} has no SQL file {yml.stem}.sql next to it",
                                           Location(yml), did_you_mean(yml.stem, names)
                                           or "a file describing several models lists them under `models:`"))
    return found


def _yaml_or_error(path: Path, errors: list[ProjectError]) -> YamlDoc | None:
    try:
        return load_yaml(path)
    except ProjectError as exc:
        errors.append(exc)
        return None


SEVERAL_KEYS = ("models", "version")  # version: 2 of dbt's schema.yml is accepted and means nothing here


def _describe_several(doc: YamlDoc, layer: str, found: list[Asset], described: dict[str, Path],
                      errors: list[ProjectError]) -> None:
    """A sidecar of several models, as dbt's ``schema.yml``: ``models:`` lists entries with a ``name`` and the
    keys of a model's own sidecar. Each entry settles the model of that name in this layer (``found`` is
    updated in place); a model may be described once, here or in its own sidecar."""
    data = doc.data
    for key in data:
        if key not in SEVERAL_KEYS:
            errors.append(ProjectError(f"unknown key '{key}' in a file describing several models",
                                       doc.location((key,)), "it holds `models:` (a list of models, each with "
                                       "`name:` and the keys of a sidecar)"))
    entries = data.get("models")
    if not isinstance(entries, list):
        errors.append(ProjectError("`models:` is a list of models, each with `name:`", doc.location(("models",))))
        return
    index = {a.name: i for i, a in enumerate(found) if a.layer == layer}
    for i, entry in enumerate(entries):
        where = doc.location(("models", i))
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(ProjectError("each entry of `models:` needs a `name:` (the model's file name)", where))
            continue
        name = entry["name"].lower()
        if name not in index:
            errors.append(ProjectError(f"no model {layer}.{name} for this entry", where,
                                       did_you_mean(name, list(index)) or f"models of this layer: "
                                       f"{', '.join(sorted(index)) or 'none'}"))
            continue
        asset = found[index[name]]
        if asset.python is not None:
            errors.append(ProjectError(f"{asset.key} is a Python model: its settings go in {name}.yml next to it",
                                       where))
            continue
        if asset.config_path is not None:
            other = described.get(name, asset.config_path)
            errors.append(ProjectError(f"{asset.key} is described twice (also in {other})", where,
                                       "keep one description of each model"))
            continue
        prefix = ("models", i)
        sub = YamlDoc(doc.path, {k: v for k, v in entry.items() if k != "name"},
                      {p[2:]: pos for p, pos in doc.positions.items() if p[:2] == prefix})
        try:
            config = validate(sub, ModelConfig)
            _check_incremental(sub, config)
        except (ProjectError, ProjectErrors) as exc:
            errors.extend(exc.errors)
            continue
        found[index[name]] = replace(asset, config=config, config_path=doc.path, config_at=prefix)
        described[name] = doc.path


def _python_models(layer: str, py_path: Path, sidecars: set[Path]) -> list[Asset]:
    """The decorated functions of a ``.py`` file, read with ``ast`` (not imported); sidecar ``<function>.yml``."""
    from kiban.python.spec import discover

    found: list[Asset] = []
    for spec in discover(py_path):
        name = spec.function.lower()
        config, config_path = ModelConfig(), None
        for suffix in (".yml", ".yaml"):
            candidate = py_path.with_name(name + suffix)
            sidecars.add(candidate)
            if candidate.exists():
                doc = load_yaml(candidate)
                config, config_path = validate(doc, ModelConfig), candidate
                if config.materialized != "table":
                    raise ProjectError("a Python model is published as a table", doc.location(("materialized",)))
                break
        found.append(Asset(layer=layer, name=name, path=py_path, config=config,  # type: ignore[arg-type]
                           config_path=config_path, python=spec))
    return found


def _load_model(layer: str, sql_path: Path) -> Asset:
    name = sql_path.stem.lower()  # SQL identifiers are case-insensitive; so are asset names
    if not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise ProjectError(f"model name '{name}' must be letters, digits and _ (not starting with a digit)",
                           Location(sql_path))
    try:
        sql = sql_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", Location(sql_path)) from None
    if not sql.strip():
        raise ProjectError("the SQL file is empty; a model is one SELECT statement", Location(sql_path, 1))

    refuse_templating(sql, sql_path)
    config = ModelConfig()
    config_path = None
    for suffix in (".yml", ".yaml"):
        candidate = sql_path.with_suffix(suffix)
        if candidate.exists():
            doc = load_yaml(candidate)
            config = validate(doc, ModelConfig)
            _check_incremental(doc, config)
            config_path = candidate
            break
    return Asset(layer=layer, name=name, path=sql_path, sql=sql, config=config,  # type: ignore[arg-type]
                 config_path=config_path)


def _check_incremental(doc: YamlDoc, config: ModelConfig) -> None:
    """An incremental model needs its time column; partition settings mean nothing on other models."""
    if config.incremental and not config.time_column:
        raise ProjectError("an incremental model needs a time_column to cut its partitions by",
                           doc.location(("materialized",)),
                           "add e.g. `time_column: ordered_at` (a date or timestamp column of the model)")
    if not config.incremental:
        for key in ("grain", "lookback"):
            if isinstance(doc.data, dict) and key in doc.data:
                raise ProjectError(f"`{key}` only applies to incremental models", doc.location((key,)),
                                   "add `materialized: incremental`, or remove the key")


def _sources(root: Path, config: ProjectConfig, assets: dict[str, Asset],
             errors: list[ProjectError]) -> dict[str, SourceSpec]:
    """``sources/NAME.yml``: each table becomes the lake asset ``lake.<NAME>_<table>`` (kiban.collect).

    Its data lives in ``lake/NAME/<table>/``, so the folder ``lake/NAME/`` is the source's, not a plain lake table.
    """
    import re

    from kiban.collect.spec import NAME, SOURCE_TYPES, SourceSpec

    folder = root / "sources"
    if not folder.is_dir():
        return {}
    found: dict[str, SourceSpec] = {}
    lake = (root / config.lake).resolve()
    for path in yaml_files(folder):
        name = path.stem
        try:
            doc = load_yaml(path)
            if not re.match(NAME, name):
                raise ProjectError(f"source name '{name}' must be letters, digits and _ (it becomes part of "
                                   "lake table names)", Location(path))
            kind = doc.data.get("type") if isinstance(doc.data, dict) else None
            if isinstance(kind, str) and kind not in SOURCE_TYPES:
                raise ProjectError(f"unknown source type '{kind}'", doc.location(("type",)),
                                   did_you_mean(kind, SOURCE_TYPES) or f"types: {', '.join(SOURCE_TYPES)}")
            spec = validate(doc, SourceSpec)
        except (ProjectError, ProjectErrors) as exc:
            errors.extend(exc.errors)
            continue
        if name in found:
            errors.append(ProjectError(f"two sources are both named {name}", Location(path)))
            continue
        assets.pop(f"lake.{name.lower()}", None)  # lake/NAME/ holds this source's tables
        for table_name, table in spec.tables.items():
            key = f"lake.{name}_{table_name}".lower()
            if key in assets:
                errors.append(ProjectError(
                    f"{key} is both table {table_name} of source {name} and the lake folder {assets[key].path}",
                    doc.location(("tables", table_name)), "rename the table or the folder"))
                continue
            model = ModelConfig(description=table.description or spec.description, owner=table.owner or spec.owner,
                                tags=tuple(dict.fromkeys((*spec.tags, *table.tags))), columns=table.columns,
                                checks=table.checks, time_column=table.time_column,
                                expected_by=table.expected_by)
            assets[key] = Asset(layer="lake", name=key.split(".", 1)[1], path=lake / name / table_name,
                                config=model, config_path=path)
        found[name] = spec
    return found


__all__ = ["LAYERS", "PROJECT_FILE", "Project", "find_project_root", "load_project", "resolve_url"]
