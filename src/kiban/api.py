"""The Python API of kiban models: decorators that declare Python assets, training and scoring assets.

A Python model is a plain function in ``models/warehouse/*.py`` or ``models/mart/*.py``::

    import kiban
    import pyarrow as pa

    @kiban.asset
    def daily_demand(warehouse_order_lines: pa.Table) -> pa.Table:
        ...

Its inputs are its parameters: ``warehouse_order_lines`` (or just ``order_lines``) is the asset
``warehouse.order_lines``; ``inputs={"lines": "warehouse.order_lines"}`` names them explicitly. Each arrives
as the annotation asks: a ``pyarrow.Table`` (the default), a ``pandas.DataFrame`` or a ``polars.DataFrame``.
What it returns (any of those) is published like a SQL model.

kiban reads these declarations with :mod:`ast` when it loads a project, so the decorators' arguments must be
literals (strings, numbers, lists, dicts). The decorators themselves only mark the function: importing a
model file outside kiban has no effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__kiban__"  # what the decorators set on the function


@dataclass
class Trained:
    """What a training function returns: the fitted model, its hold-out metrics and its parameters.

    ``features``: the training features (table or frame); kiban keeps their distribution with the version, and
    ``drift`` checks compare later data with it.
    """

    model: Any
    metrics: Mapping[str, float]
    params: Mapping[str, Any] = field(default_factory=dict)
    features: Any = None


def _mark(kind: str, options: dict[str, Any]) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        setattr(fn, ATTRIBUTE, {"kind": kind, **options})
        return fn

    return decorate


@overload
def asset(fn: F, /) -> F: ...


@overload
def asset(*, inputs: Mapping[str, str] | None = None) -> Callable[[F], F]: ...


def asset(fn: F | None = None, /, *, inputs: Mapping[str, str] | None = None) -> F | Callable[[F], F]:
    """Declare a Python asset named after the function; it returns a table."""
    decorate = _mark("asset", {"inputs": dict(inputs or {})})
    return decorate(fn) if fn is not None else decorate


def train(*, metric: str, direction: Literal["min", "max"] = "min", threshold: float | None = None,
          inputs: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Declare a training asset: the function returns :class:`Trained`.

    A new version becomes current only if its hold-out ``metric`` beats the current version's (``direction``
    min: lower is better) and, when given, meets ``threshold``; otherwise it is recorded as rejected.
    """
    return _mark("train", {"metric": metric, "direction": direction, "threshold": threshold,
                           "inputs": dict(inputs or {})})


def score(*, model: str, inputs: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Declare a scoring asset: the parameter ``model`` receives the current version of ``model`` (a training
    asset, e.g. ``warehouse.demand_model``); the function returns the predictions as a table."""
    return _mark("score", {"model": model, "inputs": dict(inputs or {})})


__all__ = ["Trained", "asset", "score", "train"]
