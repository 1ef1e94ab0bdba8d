"""Running a Python model: import its file, hand it its inputs, and turn what it returns into an Arrow table.

This runs in the worker thread of the build, before the publishing transaction opens (a training may take
minutes; the transaction then only swaps the table in). Inputs are read through the build's own cursor.
The engine publishes the table exactly like a SQL model's result (see ``DuckDBEngine.build``).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from kiban.errors import KibanError
from kiban.project import Asset
from kiban.python.frames import as_arrow, convert
from kiban.python.spec import MODEL_PARAMETER, PythonSpec, helper_source
from kiban.quoting import relation

_modules: dict[tuple[str, str, tuple[tuple[str, Path, str], ...]], ModuleType] = {}  # (path, source, helpers) → module
_import_lock = threading.Lock()


class PythonModelError(KibanError):
    """The model's own code raised, or returned something that is not a table.

    ``retryable``: the model's function raised (a database that dropped the connection, an API that timed out):
    another attempt may succeed, so the asset's ``retries:`` apply. A file that does not import or a function that
    returns no table fails the same way every time and is not retried."""

    retryable = False


class PythonModelRaised(PythonModelError):
    """The model's function raised: worth the attempts its ``retries:`` allow."""

    retryable = True


def function_of(asset: Asset) -> Callable[..., Any]:
    """Import the model's file (once per version of its source) and return its function.

    The source executed is the one whose hash is in the fingerprint: a file edited since the project was loaded
    fails the build instead of publishing a table under a fingerprint that does not describe it."""
    spec = asset.python
    assert spec is not None
    with _import_lock:
        folder = str(spec.path.parent)
        if folder not in sys.path:
            sys.path.append(folder)  # helper modules next to the model file
        _load_helpers(spec)
        version = (str(spec.path), spec.module_hash, spec.helpers)
        module = _modules.get(version)
        if module is None:
            source = spec.path.read_text(encoding="utf-8")
            if hashlib.sha256(source.encode()).hexdigest() != spec.module_hash:
                raise PythonModelError(f"{spec.path} changed while kiban was running", "run again")
            name = f"kiban_models.{asset.layer}.{spec.path.stem}_{spec.code_hash[:10]}"
            module = ModuleType(name)
            module.__file__ = str(spec.path)
            sys.modules[name] = module  # classes defined in the file can be found by name (dataclasses, pickle)
            try:
                exec(compile(source, str(spec.path), "exec"), module.__dict__)
            except Exception as exc:
                del sys.modules[name]
                raise _user_error(exc, spec.path, f"importing {spec.path.name} failed") from None
            _modules[version] = module
    fn = getattr(module, spec.function, None)
    if not callable(fn):
        raise PythonModelError(f"{spec.path.name} defines no function {spec.function} when imported")
    return fn


HELPER_VERSION = "__kiban_helper__"  # on a helper module kiban imported: (its path, the digest it was imported at)


def _load_helpers(spec: PythonSpec) -> None:
    """Make ``import helpers`` in the model's file (and in its function, when it runs) find the helper modules
    whose code is in its fingerprint: this folder's files, as they are now. Python imports a module once per
    process, so a helper edited since (or another folder's module of the same name) would otherwise be served
    from ``sys.modules`` — the new fingerprint published over the old code's rows."""
    if all(getattr(sys.modules.get(name), HELPER_VERSION, None) == (str(path), digest)
           for name, path, digest in spec.helpers):
        return
    stale = [name for name, _, _ in spec.helpers]  # all of them: one may hold names it took from another
    for name in stale:
        sys.modules.pop(name, None)
    folder = str(spec.path.parent)
    sys.path.insert(0, folder)  # this folder's helpers first, whatever other model folders hold
    try:
        for name, path, digest in spec.helpers:
            if name not in stale:
                continue
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                sys.modules.pop(name, None)
                raise _user_error(exc, path, f"importing {path.name} failed") from None
            if Path(getattr(module, "__file__", "") or "") != path:
                raise PythonModelError(f"import {name} in {spec.path.name} found {getattr(module, '__file__', name)}, "
                                       f"not {path}", f"rename {path.name}: another module has its name")
            now = helper_source(spec.path.parent, name)
            if now is None or now[1] != digest:
                sys.modules.pop(name, None)
                raise PythonModelError(f"{path} changed while kiban was running", "run again")
            setattr(module, HELPER_VERSION, (str(path), digest))
    finally:
        sys.path.remove(folder)


def to_arrow(value: Any, asset: Asset) -> pa.Table:
    """What the model returned, as Arrow; anything else is a clear error naming the function."""
    table = as_arrow(value)
    if table is not None:
        return table
    spec = asset.python
    assert spec is not None
    raise PythonModelError(f"{asset.key}: {spec.function}() returned {type(value).__name__}, not a table",
                           f"return a pyarrow.Table, a pandas or a polars DataFrame ({spec.path}:{spec.line})")


def produce(cursor: Any, asset: Asset, fingerprint: str, resolved: Mapping[str, str], root: Path) -> pa.Table:
    """Run the model's function and return the table to publish. ``resolved``: parameter → the relation it reads
    (``Graph.python_inputs``); ``root``: the project's folder, where the model registry is."""
    spec = asset.python
    assert spec is not None
    if len(resolved) < len(spec.inputs) + (spec.kind == "score"):
        raise PythonModelError(f"{asset.key}: its inputs are not resolved (build the graph first: "
                               "kiban.graph.build_graph)")
    fn = function_of(asset)
    kwargs: dict[str, Any] = {}
    arrow_inputs: list[pa.Table] = []
    for wanted in spec.inputs:
        key = resolved[wanted.parameter]
        result = cursor.execute(f"select * from {relation(key)}")
        table = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
        arrow_inputs.append(table)
        kwargs[wanted.parameter] = convert(table, wanted.annotation)
    if spec.kind == "score":  # the version the published training table names: a refused publish never scores
        from kiban.ml.registry import open_registry
        from kiban.ml.training import settle

        trained = resolved[MODEL_PARAMETER]
        version = settle(root, trained, cursor)
        registry = open_registry(root)
        try:
            _, kwargs[MODEL_PARAMETER] = registry.load(trained, version)
        finally:
            registry.store.close()
    try:
        value = fn(**kwargs)
    except KibanError:
        raise
    except Exception as exc:
        raise _user_error(exc, spec.path, f"{asset.key}: {spec.function}() raised", PythonModelRaised) from None
    if spec.kind == "train":
        from kiban.ml.training import published_version, register

        return register(asset, value, fingerprint, arrow_inputs, root, published_version(cursor, asset.key))
    return to_arrow(value, asset)


def _user_error(exc: BaseException, path: Path, what: str,
                kind: type[PythonModelError] = PythonModelError) -> PythonModelError:
    """The user's exception with the line of their file where it happened (the deepest frame in it)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    where = f" at {path}:{frames[-1].lineno}" if frames else f" ({path})"
    return kind(f"{what}{where}: {type(exc).__name__}: {exc}")


__all__ = ["PythonModelError", "PythonModelRaised", "as_arrow", "convert", "function_of", "produce", "relation",
           "to_arrow"]
