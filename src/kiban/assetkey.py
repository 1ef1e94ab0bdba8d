"""Asset keys and the one resolver of the names SQL, checks and the console write for them.

An asset's key is ``layer.name`` in lower case (``warehouse.orders``). SQL may name it qualified or, when no other
layer has an asset of that name, bare (``orders``). A collected lake table also has derived views:
``lake.x_latest`` (with a primary key) and ``lake.x_history`` (``history: scd2``); a reader of a view reads the
table it is made from, so the resolver answers with the table's key (its lineage, PII tags and freshness are the
table's). The graph, the console's query check, column lineage and the checks' relationships all resolve through
:class:`KeyResolver`, so they cannot disagree (``tests/test_assetkey.py``). A core leaf: imports only
``kiban.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kiban.errors import closest, did_you_mean

LATEST = "_latest"  # suffix of the view with the newest row per primary key
HISTORY = "_history"  # suffix of the view with every version (valid_from, valid_to)


@dataclass(frozen=True, order=True)
class AssetKey:
    """``layer.name``, lower case: what the store, the graph and every front end call an asset."""

    layer: str
    name: str

    @classmethod
    def parse(cls, text: str) -> AssetKey:
        """``"Warehouse.Orders"`` → ``AssetKey("warehouse", "orders")``; ValueError without a layer."""
        layer, dot, name = text.strip().lower().partition(".")
        if not dot or not layer or not name:
            raise ValueError(f"'{text}' is not an asset key: write layer.name (e.g. warehouse.orders)")
        return cls(layer, name)

    def __str__(self) -> str:
        return f"{self.layer}.{self.name}"


def lake_views(table: str, *, latest: bool, history: bool) -> dict[str, str]:
    """The derived views of the collected lake table ``table`` (a key), each → ``table``."""
    return {**({f"{table}{LATEST}": table} if latest else {}), **({f"{table}{HISTORY}": table} if history else {})}


class KeyResolver:
    """Resolves ``schema.name`` (or a bare, unambiguous ``name``) to an asset key, a derived view to its table.

    ``keys`` are the asset keys; ``views`` maps each derived view to the key of its table. A mapping whose values
    have a ``key`` (``Graph.readable``: view → the table's asset) gives both at once.
    """

    def __init__(self, keys: Iterable[str] | Mapping[str, object], views: Mapping[str, str] | None = None) -> None:
        self.views: dict[str, str] = dict(views or {})
        if isinstance(keys, Mapping):
            for name, value in keys.items():
                own = getattr(value, "key", None)
                if isinstance(own, str) and own != name:
                    self.views.setdefault(name, own)
        self.keys: dict[str, str] = {k.lower(): k for k in keys if k not in self.views}
        self.by_name: dict[str, list[str]] = {}  # bare name → every key (views: their table) it may mean
        for key in [*self.keys, *self.views]:
            self.by_name.setdefault(key.split(".", 1)[1], []).append(self.views.get(key, key))

    @classmethod
    def of_graph(cls, graph: object) -> KeyResolver:
        """The resolver of a :class:`kiban.graph.Graph` (its assets and its lake views)."""
        return cls(getattr(graph, "assets", {}), getattr(graph, "views", {}))

    def resolve(self, schema: str, name: str) -> str | None:
        """The asset key ``schema.name`` (or the bare ``name``) means, else None (unknown or ambiguous)."""
        schema, name = (schema or "").lower(), name.lower()
        if schema:
            key = f"{schema}.{name}"
            return self.views.get(key, key if key in self.keys else None)
        matches = self.by_name.get(name, [])
        return matches[0] if len(matches) == 1 else None

    def __call__(self, schema: str, name: str) -> str | None:
        return self.resolve(schema, name)

    def key(self, text: str) -> str | None:
        """:meth:`resolve` of a name as written (``layer.name`` or ``name``)."""
        schema, _, name = text.rpartition(".")
        return self.resolve(schema, name)

    def candidates(self, name: str) -> list[str]:
        """Every key a bare ``name`` may mean (more than one: it is ambiguous)."""
        return list(self.by_name.get(name.lower(), []))

    def hint(self, schema: str, name: str) -> str | None:
        """What to say when ``schema.name`` resolves to nothing: the ambiguity, or the nearest known name."""
        schema, name = (schema or "").lower(), name.lower()
        matches = self.by_name.get(name, [])
        if schema:
            return did_you_mean(f"{schema}.{name}", [*self.keys, *self.views]) or (
                f"known assets named {name}: {', '.join(matches)}" if matches else None)
        if len(matches) > 1:
            return "qualify it with its layer, e.g. " + matches[0]
        near = closest(name, self.by_name)
        return f"did you mean '{self.by_name[near][0]}'?" if near else None

    def explain(self, text: str) -> tuple[str, str | None]:
        """Why the name ``text`` (as a user wrote it: ``layer.name`` or ``name``) resolves to nothing: the problem
        (``unknown asset 'x'`` or ``'x' is ambiguous: …``) and a hint (did you mean, or qualify it)."""
        schema, _, name = text.rpartition(".")
        matches = [] if schema else self.candidates(name)
        if len(matches) > 1:
            return f"'{text}' is ambiguous: {', '.join(matches)}", "qualify it with its layer"
        return f"unknown asset '{text}'", did_you_mean(text.lower(), [*self.keys, *self.views, *self.by_name])


__all__ = ["HISTORY", "LATEST", "AssetKey", "KeyResolver", "lake_views"]
