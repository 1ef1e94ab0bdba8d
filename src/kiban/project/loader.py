"""Loading a project folder into an immutable :class:`Project`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kiban.errors import ConfigError, Location, ProjectError, ProjectErrors, did_you_mean
from kiban.project.asset import Asset
from kiban.project.config import LAYERS, ModelConfig, ProjectConfig
from kiban.project.usecase import UseCase, UseCaseConfig
from kiban.project.yamlfile import YamlPath, load_yaml, validate

PROJECT_FILE = "kiban.yml"
MODEL_LAYERS = ("warehouse", "mart")


@dataclass(frozen=True)
class Project:
    """A loaded project: its configuration and its assets (not yet wired into a graph)."""

    root: Path
    config: ProjectConfig
    assets: dict[str, Asset]
    usecases: dict[str, UseCase] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

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
    if url.startswith("env:"):
        name = url[4:]
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"environment variable {name} is not set (the project refers to env:{name})")
        url = value
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
    for asset in _model_assets(root, errors):
        if asset.key in assets:
            other = assets[asset.key]
            errors.append(ProjectError(f"two models are both named {asset.key} (the other is {other.path})",
                                       Location(asset.path)))
            continue
        assets[asset.key] = asset
    usecases = _usecases(root, config, assets, errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    return Project(root=root, config=config, assets=dict(sorted(assets.items())), usecases=usecases)


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
    by_name: dict[str, list[str]] = {}
    for key, asset in assets.items():
        by_name.setdefault(asset.name, []).append(key)
    found: dict[str, UseCase] = {}
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        try:
            doc = load_yaml(path)
            cfg = validate(doc, UseCaseConfig)
        except ProjectErrors as many:
            errors.extend(many.errors)
            continue
        except ProjectError as exc:
            errors.append(exc)
            continue
        if path.stem in found:
            errors.append(ProjectError(f"two use cases are both named {path.stem} (the other is "
                                       f"{found[path.stem].path.name})", Location(path)))
            continue
        keys: list[str] = []
        for i, name in enumerate(cfg.assets):
            matches = [name] if name in assets else by_name.get(name, [])
            if len(matches) == 1:
                keys.append(matches[0])
                continue
            hint = did_you_mean(name, [*assets, *by_name]) if not matches else "qualify it with its layer"
            problem = f"unknown asset '{name}'" if not matches else f"'{name}' is ambiguous: {', '.join(matches)}"
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


def _lake_assets(root: Path, config: ProjectConfig) -> list[Asset]:
    lake = root / config.lake
    if not lake.is_dir():
        return []
    return [
        Asset(layer="lake", name=entry.name.lower(), path=entry)
        for entry in sorted(lake.iterdir())
        if entry.is_dir() and not entry.name.startswith((".", "_"))
    ]


def _model_assets(root: Path, errors: list[ProjectError]) -> list[Asset]:
    models = root / "models"
    if not models.is_dir():
        return []
    found: list[Asset] = []
    for folder in sorted(models.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if folder.name not in MODEL_LAYERS:
            hint = did_you_mean(folder.name, MODEL_LAYERS) or "models live in models/warehouse/ or models/mart/"
            errors.append(ProjectError(f"'{folder.name}' is not a layer", Location(folder), hint))
            continue
        for sql_path in sorted(folder.rglob("*.sql")):
            try:
                found.append(_load_model(folder.name, sql_path))
            except ProjectErrors as many:
                errors.extend(many.errors)
            except ProjectError as exc:
                errors.append(exc)
        for yml in sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")]):
            if not yml.with_suffix(".sql").exists():
                names = [p.stem for p in folder.rglob("*.sql")]
                errors.append(ProjectError(f"sidecar {yml.name} has no SQL file {yml.stem}.sql next to it",
                                           Location(yml), did_you_mean(yml.stem, names)))
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
    config = ModelConfig()
    config_path = None
    for suffix in (".yml", ".yaml"):
        candidate = sql_path.with_suffix(suffix)
        if candidate.exists():
            config = validate(load_yaml(candidate), ModelConfig)
            config_path = candidate
            break
    return Asset(layer=layer, name=name, path=sql_path, sql=sql, config=config,  # type: ignore[arg-type]
                 config_path=config_path)


__all__ = ["LAYERS", "PROJECT_FILE", "Project", "find_project_root", "load_project", "resolve_url"]
