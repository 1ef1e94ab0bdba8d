"""The lineage cache ``.kiban/cache/lineage.json``: a model's column lineage keyed by its SQL and the columns
of what it reads, so a second `kiban lineage` of an unchanged project does not qualify any SQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.cachefile import library_version, read_entries, write_entries

if TYPE_CHECKING:
    from kiban.catalog.lineage import QueryLineage

CACHE_VERSION = 2


class LineageCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Any] = read_entries(path, CACHE_VERSION)
        self.used: set[str] = set()
        self.dirty = False

    @staticmethod
    def _key(sql: str, schema: Mapping[str, Iterable[str]]) -> str:
        shape = json.dumps({k: list(v) for k, v in sorted(schema.items())}, separators=(",", ":"))
        return hashlib.sha256(f"{library_version('sqlglot')}\0{sql}\0{shape}".encode()).hexdigest()

    def get(self, sql: str, schema: Mapping[str, Iterable[str]]
            ) -> tuple[tuple[str, ...], dict[str, frozenset[tuple[str, str]]], frozenset[str]] | None:
        """The fields of the :class:`~kiban.catalog.lineage.QueryLineage` stored for ``sql`` over ``schema``."""
        key = self._key(sql, schema)
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.used.add(key)
        sources = {name: frozenset((a, c) for a, c in refs) for name, refs in hit["sources"].items()}
        return tuple(hit["columns"]), sources, frozenset(hit.get("unexplained", ()))

    def put(self, sql: str, schema: Mapping[str, Iterable[str]], lineage: QueryLineage) -> None:
        key = self._key(sql, schema)
        self.entries[key] = {"columns": list(lineage.columns),
                             "sources": {n: sorted(refs) for n, refs in lineage.sources.items()},
                             "unexplained": sorted(lineage.unexplained)}
        self.used.add(key)
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not (self.dirty or set(self.entries) - self.used):
            return
        write_entries(self.path, CACHE_VERSION, {k: v for k, v in self.entries.items() if k in self.used})
