"""Reading a dbt project (dbt-core 1.5+ layout) as data: nothing is rendered here.

``dbt_project.yml`` gives the paths, the variables and the configs by folder; the nodes are the
files under those paths (models, seeds, snapshots, singular tests, macros, docs blocks); the
property files (``schema.yml`` and friends) give descriptions, tests, sources and exposures. Vendored
packages under ``dbt_packages/`` contribute their macros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.dbt.versions import NoSuchVersion, read_versions, version_key
from kiban.errors import Location, ProjectError
from kiban.project.yamlfile import YamlDoc, load_yaml

# Keys of a config tree in dbt_project.yml that hold a dict but are configs, not folders.
DICT_CONFIGS = {"meta", "docs", "persist_docs", "grants", "column_types", "contract", "labels", "quoting"}
_DOCS_BLOCK = re.compile(r"{%-?\s*docs\s+(\w+)\s*-?%}(.*?){%-?\s*enddocs\s*-?%}", re.S)


@dataclass
class Node:
    """A model, seed, snapshot or singular test: one file of the project."""

    kind: str  # model, seed, snapshot, test
    name: str
    path: Path  # absolute
    rel: str  # relative to the dbt project, for messages
    fqn: tuple[str, ...]  # package, folders under the resource path, name: what configs match
    text: str = ""  # SQL (models, snapshots, tests); empty for seeds


@dataclass
class Properties:
    """One entry of a property file (models:, seeds:, snapshots:), with where it is written."""

    data: dict[str, Any]
    doc: YamlDoc
    path: tuple[str | int, ...]

    def line(self, *more: str | int) -> int | None:
        return self.doc.location((*self.path, *more)).line


@dataclass
class Package:
    """The root project or a vendored package: its name and its macro files."""

    name: str
    root: Path
    macro_files: list[Path] = field(default_factory=list)


@dataclass
class DbtProject:
    root: Path
    name: str
    config: dict[str, Any]
    packages: list[Package]  # the root project first
    models: dict[str, Node] = field(default_factory=dict)
    seeds: dict[str, Node] = field(default_factory=dict)
    snapshots: dict[str, Node] = field(default_factory=dict)
    singular_tests: list[Node] = field(default_factory=list)
    properties: dict[tuple[str, str], Properties] = field(default_factory=dict)  # (kind, name) → entry
    sources: list[Properties] = field(default_factory=list)
    exposures: list[Properties] = field(default_factory=list)
    docs: dict[str, str] = field(default_factory=dict)
    unsupported: list[tuple[str, int | None, str, str]] = field(default_factory=list)  # (file, line, what, why)
    config_doc: YamlDoc | None = None  # dbt_project.yml with its positions, for the lines of its configs
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # versioned model → {v: its model's name}
    latest: dict[str, str] = field(default_factory=dict)  # versioned model → its latest v

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def versioned(self, name: str, version: Any = None) -> str:
        """The model ``ref(name, v=version)`` names: a versioned model's unpinned ref is its latest version
        (``latest_version``, else the highest). Any other name is itself."""
        versions = self.versions.get(name)
        if versions is None:
            return name
        v = self.latest[name] if version is None else version_key(version)
        if v not in versions:
            raise NoSuchVersion(f"ref('{name}', v={version}): model {name} has no such version",
                                f"its versions: {', '.join(versions)}")
        return versions[v]

    def project_vars(self) -> dict[str, Any]:
        """``vars:`` of dbt_project.yml: global ones, then the ones scoped to this project."""
        raw = self.config.get("vars") or {}
        names = {p.name for p in self.packages}
        out = {k: v for k, v in raw.items() if not (k in names and isinstance(v, dict))}
        if isinstance(raw.get(self.name), dict):
            out.update(raw[self.name])
        return out

    def node_config(self, section: str, node: Node) -> dict[str, Any]:
        """The configs dbt_project.yml gives ``node`` (``models:``, ``seeds:``…), most specific last."""
        tree = self.config.get(section) or {}
        merged: dict[str, Any] = {}
        _merge(merged, _configs_at(tree))
        for part in node.fqn:
            sub = tree.get(part) if isinstance(tree, dict) else None
            if not isinstance(sub, dict):
                break
            tree = sub
            _merge(merged, _configs_at(tree))
        return merged


    def test_config(self, fqn: tuple[str, ...]) -> dict[str, Any]:
        """What dbt_project.yml's ``tests:`` / ``data_tests:`` give a test of this fqn (the project, the
        folders of its property file — or of the singular test — under the resource path, its name)."""
        node = Node("test", fqn[-1], self.root, "", fqn)
        return {**self.node_config("tests", node), **self.node_config("data_tests", node)}


def _configs_at(tree: dict[str, Any]) -> dict[str, Any]:
    return {k.lstrip("+"): v for k, v in tree.items()
            if k.startswith("+") or not isinstance(v, dict) or k in DICT_CONFIGS}


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    """dbt's config inheritance: tags add up, meta merges, everything else is replaced."""
    for key, value in more.items():
        if key == "tags":
            tags = [value] if isinstance(value, str) else list(value or [])
            into["tags"] = [*into.get("tags", []), *(t for t in tags if t not in into.get("tags", []))]
        elif key == "meta" and isinstance(value, dict):
            into["meta"] = {**into.get("meta", {}), **value}
        else:
            into[key] = value


def read_project(root: Path) -> DbtProject:
    """Read ``root`` as a dbt project; a folder without dbt_project.yml is a clear error."""
    root = root.resolve()
    project_file = root / "dbt_project.yml"
    if not project_file.is_file():
        raise ProjectError("not a dbt project: no dbt_project.yml here", Location(root),
                           "point `kiban import dbt` at the folder that holds dbt_project.yml")
    doc = load_yaml(project_file)
    config = doc.data if isinstance(doc.data, dict) else {}
    name = str(config.get("name") or root.name)
    project = DbtProject(root=root, name=name, config=config, packages=[], config_doc=doc)
    project.packages.append(Package(name, root, _macro_files(root, config)))
    packages_dir = root / str(config.get("packages-install-path") or "dbt_packages")
    if packages_dir.is_dir():
        for folder in sorted(p for p in packages_dir.iterdir() if p.is_dir()):
            sub_file = folder / "dbt_project.yml"
            sub = load_yaml(sub_file).data if sub_file.is_file() else {}
            sub = sub if isinstance(sub, dict) else {}
            project.packages.append(Package(str(sub.get("name") or folder.name), folder, _macro_files(folder, sub)))
    _read_nodes(project)
    for key in ("on-run-start", "on-run-end"):
        if config.get(key):
            project.unsupported.append(("dbt_project.yml", doc.location((key,)).line, key,
                                        "kiban runs no hooks; do this work in a model or outside the run"))
    return project


def _paths(root: Path, config: dict[str, Any], key: str, default: str) -> list[Path]:
    return [root / p for p in (config.get(key) or [default])]


def _macro_files(root: Path, config: dict[str, Any]) -> list[Path]:
    """macros/**/*.sql, and tests/generic/**/*.sql (generic tests are macros too)."""
    folders = [*_paths(root, config, "macro-paths", "macros"),
               *(d / "generic" for d in _paths(root, config, "test-paths", "tests"))]
    return [f for d in folders if d.is_dir() for f in sorted(d.rglob("*.sql"))]


def _read_nodes(project: DbtProject) -> None:
    root, config = project.root, project.config
    for kind, key, default in (("model", "model-paths", "models"), ("snapshot", "snapshot-paths", "snapshots"),
                               ("test", "test-paths", "tests")):
        for folder in _paths(root, config, key, default):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*.sql")):
                if kind == "test" and "generic" in path.relative_to(folder).parts:
                    continue  # tests/generic/*.sql hold generic tests: macros, not singular tests
                text = path.read_text(encoding="utf-8")
                if kind == "snapshot":
                    for match in re.finditer(r"{%-?\s*snapshot\s+(\w+)\s*-?%}", text):
                        project.snapshots[match.group(1)] = Node("snapshot", match.group(1), path, project.rel(path),
                                                                 (project.name, match.group(1)), text)
                    continue
                parts = path.relative_to(folder).with_suffix("").parts
                node = Node(kind, path.stem, path, project.rel(path), (project.name, *parts), text)
                if kind == "model" and node.name in project.models:
                    project.unsupported.append((node.rel, None, f"model {node.name}", "a second model of that name "
                                                f"(the first is {project.models[node.name].rel}); ignored"))
                elif kind == "model":
                    project.models[node.name] = node
                else:
                    project.singular_tests.append(node)
    for folder in _paths(root, config, "model-paths", "models"):
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            project.unsupported.append((project.rel(path), None, f"Python model {path.stem}",
                                        "dbt Python models are not imported; write it as a kiban Python model "
                                        "(@kiban.asset, docs/ml.md)"))
    for folder in _paths(root, config, "seed-paths", "seeds"):
        for path in sorted(folder.rglob("*.csv")) if folder.is_dir() else []:
            parts = path.relative_to(folder).with_suffix("").parts
            project.seeds[path.stem] = Node("seed", path.stem, path, project.rel(path), (project.name, *parts))
    # property files and docs blocks live beside models, seeds and snapshots
    for key, default in (("model-paths", "models"), ("seed-paths", "seeds"), ("snapshot-paths", "snapshots"),
                         ("docs-paths", "models")):
        for folder in _paths(root, config, key, default):
            if not folder.is_dir():
                continue
            for path in sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")]):
                if key != "docs-paths":
                    _read_properties(project, path)
            for path in sorted(folder.rglob("*.md")):
                for match in _DOCS_BLOCK.finditer(path.read_text(encoding="utf-8")):
                    project.docs[match.group(1)] = match.group(2).strip()


def _read_properties(project: DbtProject, path: Path) -> None:
    doc = load_yaml(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    for kind in ("models", "seeds", "snapshots"):
        for i, entry in enumerate(data.get(kind) or []):
            if isinstance(entry, dict) and entry.get("name"):
                key = (kind[:-1], str(entry["name"]))
                if key in project.properties:  # dbt refuses this; the import keeps the first and says so
                    first = project.properties[key]
                    project.unsupported.append((project.rel(path), doc.location((kind, i)).line,
                                                f"{key[0]} {key[1]}", "described a second time (first in "
                                                f"{project.rel(first.doc.path)}:{first.line()}); this entry is "
                                                "ignored"))
                    continue
                project.properties[key] = Properties(entry, doc, (kind, i))
    for i, entry in enumerate(data.get("models") or []):
        if isinstance(entry, dict) and entry.get("name") and isinstance(entry.get("versions"), list):
            read_versions(project, entry, Properties(entry, doc, ("models", i)))
    for i, entry in enumerate(data.get("sources") or []):
        if isinstance(entry, dict) and entry.get("name"):
            project.sources.append(Properties(entry, doc, ("sources", i)))
    for section in ("metrics", "semantic_models", "saved_queries", "unit_tests", "groups"):
        for i, entry in enumerate(data.get(section) or []):
            name = entry.get("name", "?") if isinstance(entry, dict) else "?"
            project.unsupported.append((project.rel(path), doc.location((section, i)).line, f"{section} {name}",
                                        "kiban has no equivalent; not imported"))
    for i, entry in enumerate(data.get("exposures") or []):
        if isinstance(entry, dict) and entry.get("name"):
            project.exposures.append(Properties(entry, doc, ("exposures", i)))

