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
    if kind == "literal_error" and "input" in error:
        message = f"'{error['input']}' is not allowed; {message[0].lower()}{message[1:]}"
        expected = [str(v).strip("'") for v in str(error.get("ctx", {}).get("expected", "")).split(" or ")]
        near = did_you_mean(str(error["input"]), [e.strip("' ") for e in expected if e])
        return (f"{name}: {message}" if name else message), near
    return (f"{name}: {message}" if name else message), None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields that are allowed at ``loc`` inside ``model`` (best effort)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        annotation = info.annotation
        current = _inner_model(annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}).keys())


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found:
            return found
    return None


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
            problems.append(ProjectError(message, doc.location(tuple(err["loc"])), hint))
        if len(problems) == 1:
            raise problems[0] from None
        raise ProjectErrors(problems) from None
