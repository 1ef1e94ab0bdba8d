"""Versioned models (``versions:`` in a property file): each version is a model of its own, and
``ref('m')`` / ``ref('m', v=1)`` name one of them, as dbt resolves them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiban.dbt.project import DbtProject, Properties


class NoSuchVersion(LookupError):
    """``ref('m', v=9)`` where model m has no version 9."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def version_key(v: Any) -> str:
    """``v: 2``, ``v: "2"`` and ``ref(..., v=2.0)`` name the same version."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def read_versions(project: DbtProject, entry: dict[str, Any], props: Properties) -> None:
    """A model with ``versions:``: each version is its own model — file ``<name>_v<v>.sql`` (or
    ``defined_in``), relation ``<name>_v<v>`` as dbt names it — described by the model's entry with the
    version's own keys over it; ``ref(name)`` is the latest version."""
    name = str(entry["name"])
    rel = project.rel(props.doc.path)
    versions: dict[str, str] = {}
    for j, version in enumerate(entry["versions"]):
        if not isinstance(version, dict) or "v" not in version:
            continue
        v = version_key(version["v"])
        stem = str(version.get("defined_in") or f"{name}_v{v}")
        node = project.models.get(stem)
        if node is None:
            project.unsupported.append((rel, props.line("versions", j), f"model {name} v{v}",
                                        f"no model file {stem}.sql for this version; not imported"))
            continue
        versions[v] = stem
        data = {k: val for k, val in entry.items() if k not in ("versions", "latest_version")}
        for key, val in version.items():
            if key == "columns":
                data["columns"] = version_columns(entry.get("columns") or [], val or [])
            elif key == "config" and isinstance(val, dict):
                data["config"] = {**(entry.get("config") or {}), **val}
            elif key not in ("v", "defined_in"):
                data[key] = val
        config = dict(data.get("config") or {})
        config.setdefault("alias", f"{name}_v{v}")  # dbt's relation name for a version
        data["config"] = config
        data["name"] = stem
        project.properties[("model", stem)] = type(props)(data, props.doc, (*props.path, "versions", j))
    if versions:
        project.versions[name] = versions
        latest = entry.get("latest_version")
        project.latest[name] = version_key(latest) if latest is not None else max(
            versions, key=lambda k: (float(k) if k.replace(".", "", 1).isdigit() else float("-inf"), k))
        project.properties.pop(("model", name), None)


def version_columns(base: list[Any], own: list[Any]) -> list[Any]:
    """A version's ``columns``: ``include``/``exclude`` pick from the model's columns, named entries add or
    replace."""
    named = {str(c["name"]): c for c in base if isinstance(c, dict) and c.get("name")}
    out = dict(named)
    for column in own:
        if not isinstance(column, dict):
            continue
        if "include" in column or "exclude" in column:
            include = column.get("include", "all")
            if include not in ("all", "*"):
                out = {k: v for k, v in named.items() if k in set(include or [])}
            out = {k: v for k, v in out.items() if k not in set(column.get("exclude") or [])}
        elif column.get("name"):
            out[str(column["name"])] = column
    return list(out.values())
