"""YAML files that remember where every value came from.

Pydantic tells *what* is wrong (a path such as ``columns.0.name``); this module tells *where*:
it keeps the line and column of every key and value so messages can name ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kiban.errors import Location, ProjectError, ProjectErrors, did_you_mean

YamlPath = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class YamlDoc:
    """Parsed YAML plus the position of each node, keyed by its path from the root."""

    path: Path
    data: Any
    positions: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)

    def location(self, key_path: YamlPath) -> Location:
        """The location of ``key_path`` or of its nearest ancestor that has one."""
        for end in range(len(key_path), -1, -1):
            pos = self.positions.get(tuple(key_path[:end]))
            if pos:
                return Location(self.path, pos[0], pos[1])
        return Location(self.path, 1, 1)


def _walk(node: yaml.Node, here: YamlPath, positions: dict[YamlPath, tuple[int, int]]) -> Any:
    mark = node.start_mark
    positions.setdefault(here, (mark.line + 1, mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            # the key's own line is the most useful place to point at for a wrong key
            positions[(*here, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _walk(value_node, (*here, key), positions)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*here, i), positions) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path) -> YamlDoc:
    """Read a YAML file; a syntax error becomes a :class:`ProjectError` with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError("file not found", Location(path)) from None
    except UnicodeDecodeError as exc:
        raise ProjectError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", Location(path)) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProjectError(f"invalid YAML: {problem}", loc) from None
    doc = YamlDoc(path, None)
    if root is None:
        doc.data = {}
        return doc
    doc.data = _walk(root, (), doc.positions)
    return doc


def _describe(error: dict[str, Any], model: type[BaseModel]) -> tuple[str, str | None]:
    kind = error["type"]
    loc = error["loc"]
    name = ".".join(str(p) for p in loc)
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        return f"unknown key '{loc[-1]}'", did_you_mean(str(loc[-1]), fields) or (
            f"expected one of: {', '.join(sorted(fields))}" if fields else None
        )
    if kind == "missing":
        return f"missing required key '{name}'", None
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error", "enum") and "input" in error:  # a Literal or a StrEnum (kiban.status)
        message = f"'{error['input']}' is not allowed; {message[0].lower()}{message[1:]}"
        expected = [str(v).strip("'") for v in str(error.get("ctx", {}).get("expected", "")).split(" or ")]
        near = did_you_mean(str(error["input"]), [e.strip("' ") for e in expected if e])
        return (f"{name}: {message}" if name else message), near
    return (f"{name}: {message}" if name else message), None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields that are allowed at ``loc`` inside ``model`` (best effort).

    A union of models tagged by ``kind`` (the checks) shows up in the path as the tag's value:
    ``checks.0.range.mx`` looks for ``mx`` among the fields of the model whose ``kind`` is ``range``.
    """
    candidates: list[type[BaseModel]] = [model]
    keyed = False  # the previous field is a mapping (dict[str, Model]): this part is one of its keys
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        tagged = [m for m in candidates if _kind_of(m) == part]
        if tagged:
            candidates = tagged
            continue
        owner = next((m for m in candidates if part in m.model_fields), None)
        if owner is None:
            return []
        annotation = owner.model_fields[part].annotation
        keyed = getattr(annotation, "__origin__", None) is dict
        candidates = _inner_models(annotation)
        if not candidates:
            return []
    fields = list(candidates[0].model_fields) if len(candidates) == 1 else []
    return [f for f in fields if f != "kind"]


def _kind_of(model: type[BaseModel]) -> str | None:
    info = model.model_fields.get("kind")
    return info.default if info is not None and isinstance(info.default, str) else None


def _inner_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found += [m for m in _inner_models(arg) if m not in found]
    return found


def _locate(doc: YamlDoc, loc: YamlPath) -> Location:
    """Where an error's path points in the file. A tagged union (a check) puts its tag in the path
    (``checks.0.range.min``) where the YAML may not have it (``- range: …`` / ``min: …`` beside it)."""
    if loc not in doc.positions:
        for i in range(len(loc) - 2, 0, -1):  # drop an inner segment, never the key itself
            shorter = loc[:i] + loc[i + 1:]
            if shorter in doc.positions:
                return doc.location(shorter)
    return doc.location(loc)


def validate(doc: YamlDoc, model: type[M]) -> M:
    """Validate ``doc`` against ``model``; every problem names its file:line:col."""
    if not isinstance(doc.data, dict):
        raise ProjectError("expected a mapping of keys to values at the top level", Location(doc.path, 1, 1))
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message, hint = _describe(dict(err), model)
            problems.append(ProjectError(message, _locate(doc, tuple(err["loc"])), hint))
        if len(problems) == 1:
            raise problems[0] from None
        raise ProjectErrors(problems) from None


def yaml_files(folder: Path) -> list[Path]:
    """The ``*.yml`` and ``*.yaml`` files directly in ``folder``, in name order."""
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


def read_config(path: Path, model: type[M], errors: list[ProjectError]) -> tuple[YamlDoc, M] | None:
    """Load and validate one YAML file; its problems are added to ``errors`` (so a project reports them all)."""
    try:
        doc = load_yaml(path)
        return doc, validate(doc, model)
    except (ProjectError, ProjectErrors) as exc:
        errors.extend(exc.errors)
    return None
