"""What a model's published table was made from, by content: the digest of each of its definition files.

A run records, for every fingerprint it plans, the digest of the definitions it planned it from
(``Store.record_codes``); the console compares a model's current digest with the ones recorded for the fingerprint
its published table carries (:func:`kiban.catalog.definitions.stale_models`). Content, not modification times:
a file copied with its old time (``cp -p``, ``rsync -t``, a checkout), a clock that differs between machines or a
``touch -d`` cannot hide an edit, and a file edited and restored to what it was is not an edit.

The parts are taken from the project as loaded (the text a run builds from), never read again from disk: a file
edited while a run builds is not recorded as what that run built.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiban.project import Project

PART = 16  # hex digits of each part's digest: enough to tell two versions of one file apart


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:PART]


def _label(project: Project, path: Path) -> str:
    """``path`` under the project's folder: as the loader made it (no system call: a run labels every model's
    files), else as the file system resolves it (a path given through a symbolic link)."""
    if path.is_relative_to(project.root):
        return path.relative_to(project.root).as_posix()
    try:
        return path.resolve().relative_to(project.root.resolve()).as_posix()
    except (OSError, ValueError):
        return path.as_posix()


def definition_parts(project: Project, graph: Any, key: str) -> dict[str, str]:
    """Each definition file of model ``key`` (its SQL or Python, its settings in YAML, the project macros it calls),
    by its path under the project, with a digest of what the project says there. A Python model's part is its
    code hash (its module, function, options and the helpers it imports); a YAML file's part is this model's
    settings only (a file of several models' settings changes for the one whose settings changed)."""
    asset = project.assets[key]
    parts: dict[str, str] = {}
    if asset.python is not None:
        parts[_label(project, asset.path)] = _short("python\0" + asset.python.code_hash)
    else:
        parts[_label(project, asset.path)] = _short("sql\0" + (asset.sql or ""))
    if asset.config_path is not None:
        parts[_label(project, asset.config_path)] = _short("config\0" + asset.config.model_dump_json())
    texts: dict[str, list[str]] = {}
    for name in getattr(graph, "macros", {}).get(key, ()):
        macro = project.macros.get(name)
        if macro is not None:
            texts.setdefault(_label(project, macro.path), []).append(f"{name}\0{macro.text}")
    for label, found in texts.items():
        parts[label] = _short("macros\0" + "\0".join(sorted(found)))
    return parts


def definition_code(parts: dict[str, str]) -> str:
    """``parts`` as the store keeps them (JSON, sorted): equal texts mean equal definitions."""
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


def parts_of(code: str) -> dict[str, str]:
    """The parts of a recorded :func:`definition_code` ({} when it cannot be read)."""
    try:
        found = json.loads(code)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def planned_codes(project: Project, graph: Any, fingerprints: dict[str, str], keys: Any) -> dict[str, str]:
    """fingerprint → definition code of each model of ``keys`` a run planned (lake tables have no code)."""
    return {fingerprints[k]: definition_code(definition_parts(project, graph, k))
            for k in keys if k in fingerprints and k in project.assets and project.assets[k].layer != "lake"}
