"""Python models as the loader sees them: read with :mod:`ast`, never imported to be listed.

A file in ``models/<layer>/`` may hold several decorated functions (``@kiban.asset``, ``@kiban.train``,
``@kiban.score``); each is one asset named after the function. Its inputs are its parameters (or the
decorator's ``inputs=``); the decorator's arguments must be literals, so they can be read here.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kiban.errors import Location, ProjectError

KINDS = ("asset", "train", "score")
LAYER_PREFIXES = ("lake_", "warehouse_", "mart_")
MODEL_PARAMETER = "model"  # a scoring function's parameter that receives the loaded model


@dataclass(frozen=True)
class PythonInput:
    """One input of a Python model: the parameter, the asset it names (``layer.name`` or a bare name), where."""

    parameter: str
    schema: str  # '' when unqualified
    name: str
    line: int
    column: int
    annotation: str = ""  # as written: 'pa.Table', 'pd.DataFrame', 'pl.DataFrame', or ''


@dataclass(frozen=True)
class PythonSpec:
    """How to build a Python asset: which function of which file, its kind and options, its inputs."""

    kind: str  # asset, train, score
    function: str
    path: Path
    line: int
    inputs: tuple[PythonInput, ...]
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # the decorator's literal arguments
    code_hash: str = ""  # sha256 of the module's source, the function's name and the options
    returns: str = ""  # the return annotation as written
    module_hash: str = ""  # sha256 of the file's source: the file is imported once per version
    # the project's own modules the file imports (directly or through each other), found next to it: (module name,
    # path, sha256 of its source). Their code is the model's code too: part of ``code_hash``, checked when built.
    helpers: tuple[tuple[str, Path, str], ...] = ()

    def __post_init__(self) -> None:  # read-only, as the rest of a loaded project (tests/test_project_immutable.py)
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def model(self) -> str | None:
        """The training asset a scoring asset uses (as written)."""
        value = self.options.get("model")
        return str(value) if value else None


def discover(path: Path) -> list[PythonSpec]:
    """The decorated functions of one model file; a file without any is not a model (a helper module)."""
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", Location(path)) from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ProjectError(f"Python syntax error: {exc.msg}", Location(path, exc.lineno, exc.offset)) from None
    module_hash = hashlib.sha256(source.encode()).hexdigest()
    helpers = local_modules(tree, path.parent)
    found: list[PythonSpec] = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            kind, options = _decorator(decorator, path)
            if kind is None:
                continue
            if isinstance(node, ast.AsyncFunctionDef):
                raise ProjectError(f"{node.name}: a model function cannot be async", Location(path, node.lineno))
            found.append(_spec(kind, options, node, path, module_hash, helpers))
            break
    return found


def _imported(tree: ast.AST) -> set[str]:
    """The top-level names of the absolute imports anywhere in ``tree`` (``import a.b`` → ``a``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".", 1)[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".", 1)[0])
    return names


def local_modules(tree: ast.AST, folder: Path) -> tuple[tuple[str, Path, str], ...]:
    """The helper modules ``tree`` imports from ``folder`` (the model file's own, where ``import helpers`` finds
    ``helpers.py``), and those they import in turn: (name, path, sha256 of the source), by name. A helper that
    cannot be parsed counts by its bytes (importing it will say what is wrong)."""
    found: dict[str, tuple[Path, str]] = {}
    todo = sorted(_imported(tree))
    while todo:
        name = todo.pop()
        if name in found:
            continue
        module = helper_source(folder, name)
        if module is None:
            continue
        path, digest, imports = module
        found[name] = (path, digest)
        todo.extend(sorted(imports))
    return tuple((name, path, digest) for name, (path, digest) in sorted(found.items()))


def helper_source(folder: Path, name: str) -> tuple[Path, str, set[str]] | None:
    """The module ``name`` of ``folder`` (``name.py``, or the package ``name/``): its path, the digest of its
    source (a package's: of every module in it) and what it imports; None when the folder has none."""
    path, package = folder / f"{name}.py", folder / name / "__init__.py"
    if not (path.is_file() or package.is_file()):
        return None
    files = [path] if path.is_file() else sorted((folder / name).rglob("*.py"))
    digest, imports = hashlib.sha256(), set()
    for file in files:
        data = file.read_bytes()
        digest.update(f"{file.relative_to(folder)}\0".encode() + data + b"\0")
        with contextlib.suppress(SyntaxError, ValueError):
            imports |= _imported(ast.parse(data, filename=str(file)))
    return (path if path.is_file() else package), digest.hexdigest(), imports


def _decorator(node: ast.expr, path: Path) -> tuple[str | None, dict[str, Any]]:
    """(kind, literal options) of ``@kiban.asset``, ``@asset(...)`` …; (None, {}) for other decorators."""
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "kiban":
        kind = target.attr
    elif isinstance(target, ast.Name):
        kind = target.id
    else:
        return None, {}
    if kind not in KINDS:
        return None, {}
    options: dict[str, Any] = {}
    if call:
        if call.args:
            raise ProjectError(f"@{kind} takes keyword arguments only",
                               Location(path, call.lineno, call.col_offset + 1))
        for keyword in call.keywords:
            try:
                options[str(keyword.arg)] = ast.literal_eval(keyword.value)
            except ValueError:
                raise ProjectError(f"@{kind}({keyword.arg}=…) must be a literal (a string, number, list or dict): "
                                   "kiban reads it without running the file",
                                   Location(path, keyword.value.lineno, keyword.value.col_offset + 1)) from None
    return kind, options


def _spec(kind: str, options: dict[str, Any], node: ast.FunctionDef, path: Path, module_hash: str,
          helpers: tuple[tuple[str, Path, str], ...] = ()) -> PythonSpec:
    where = Location(path, node.lineno)
    if kind == "train" and not isinstance(options.get("metric"), str):
        raise ProjectError(f"@train on {node.name} needs metric='…', the hold-out metric that decides promotion",
                           where, "e.g. @kiban.train(metric='mape', direction='min')")
    if kind == "train" and options.get("direction", "min") not in ("min", "max"):
        raise ProjectError(f"@train on {node.name}: direction is 'min' or 'max', not {options['direction']!r}", where)
    if kind == "score" and not isinstance(options.get("model"), str):
        raise ProjectError(f"@score on {node.name} needs model='…', the training asset whose current version "
                           "it uses", where, "e.g. @kiban.score(model='warehouse.demand_model')")
    explicit = options.get("inputs") or {}
    if not isinstance(explicit, dict) or not all(isinstance(v, str) for v in explicit.values()):
        raise ProjectError(f"inputs= of {node.name} maps parameter names to assets, e.g. "
                           "{'lines': 'warehouse.order_lines'}", where)
    args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    names = [a.arg for a in args]
    for parameter in explicit:
        if parameter not in names:
            raise ProjectError(f"inputs= names '{parameter}', which is not a parameter of {node.name}", where)
    defaults = len(node.args.defaults)
    optional = set(names[len(node.args.posonlyargs) + len(node.args.args) - defaults:
                         len(node.args.posonlyargs) + len(node.args.args)]) if defaults else set()
    optional |= {a.arg for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d is not None}
    inputs: list[PythonInput] = []
    for arg in args:
        if kind == "score" and arg.arg == MODEL_PARAMETER:
            continue
        if arg.arg in optional and arg.arg not in explicit:
            continue  # a parameter with a default is a setting, not an input
        ref = explicit.get(arg.arg) or _from_parameter(arg.arg)
        schema, _, name = ref.rpartition(".")
        annotation = ast.unparse(arg.annotation) if arg.annotation else ""
        inputs.append(PythonInput(arg.arg, schema.lower(), name.lower(), arg.lineno, arg.col_offset + 1,
                                  annotation))
    digest = hashlib.sha256(f"{module_hash}\0{node.name}\0{kind}\0{sorted(options.items())!r}".encode())
    for name, _, source_hash in helpers:  # without helpers the hash stays what it was: no rebuild on upgrade
        digest.update(f"\0helper {name}={source_hash}".encode())
    return PythonSpec(kind=kind, function=node.name, path=path, line=node.lineno, inputs=tuple(inputs),
                      options=options, code_hash=digest.hexdigest(),
                      returns=ast.unparse(node.returns) if node.returns else "", module_hash=module_hash,
                      helpers=helpers)


def _from_parameter(parameter: str) -> str:
    """``warehouse_order_lines`` → ``warehouse.order_lines``; ``order_lines`` stays a bare name."""
    for prefix in LAYER_PREFIXES:
        if parameter.startswith(prefix) and len(parameter) > len(prefix):
            return f"{prefix[:-1]}.{parameter[len(prefix):]}"
    return parameter


__all__ = ["PythonInput", "PythonSpec", "discover"]
