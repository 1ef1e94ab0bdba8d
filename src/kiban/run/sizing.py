"""How big a build is, judged from its inputs before it starts: heavy, light, or neither.

- **Heavy**: its inputs are big (64 MiB of Parquet, or 2 million rows). DuckDB already spreads one such query over
  every core; two side by side only compete for cores and double the memory, so it runs alone.
- **Light**: every input is known and small — together under one DuckDB row group (122,880 rows) and 1 MiB of
  Parquet. DuckDB splits a scan by row groups, so such a query runs on one thread whatever it is given, and
  waking the others costs more than they do (500 models of 10,000 rows: ≈ 25% less CPU on one thread). While
  only light builds run, the engine gives them one thread each (``Engine.share``).

Rows come from the build of an input in this run or, failing that, its last successful build; lake tables from
the size of their Parquet files. A model is never light when it has no input, when anything about an input is
unknown, when its text may call a table function (``range(…)``, ``read_parquet(…)``, …: rows that come from
nowhere the inputs say), when it is a Python model, or when its own last build took half a second or more.
The executor also stops counting a build as light once it has run for a second (a join that explodes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiban.graph import Graph

HEAVY_LAKE_BYTES = 64 * 2**20  # reading this much Parquet keeps every core busy on its own
HEAVY_INPUT_ROWS = 2_000_000
LIGHT_INPUT_ROWS = 122_880  # one DuckDB row group: the unit a scan is split by
LIGHT_LAKE_BYTES = 2**20
LIGHT_LAST_SECONDS = 0.5  # a model whose last build took this long is not light, whatever its inputs
LIGHT_SECONDS = 1.0  # a light build running this long is light no more (kiban.run.executor)
# a call in FROM may make rows from nothing the inputs say: range(…), read_parquet(…), generate_series(…), …
_TABLE_FUNCTION = re.compile(r"\b(?:range|generate_series|unnest|glob|query|query_table|repeat|read_\w+|\w+_scan)"
                             r"\s*\(", re.IGNORECASE)


class Built(Protocol):
    """What sizing reads of a build: its rows (this run's outcome, or the store's last successful attempt)."""

    @property
    def rows(self) -> int | None: ...


@dataclass(frozen=True)
class LastBuild:
    rows: int | None
    seconds: float | None


@dataclass(frozen=True)
class Sizing:
    """Heavy and light, for a graph: ``done`` is this run's outcomes so far (rows of what it built)."""

    graph: Graph
    lake_bytes: Mapping[str, int | None]  # None: no Parquet file here (elsewhere, or none yet): size unknown
    last: Mapping[str, LastBuild]

    def heavy(self, key: str, done: Mapping[str, Built]) -> bool:
        nbytes = rows = 0
        for dep in self.graph.deps[key]:
            if dep in self.lake_bytes:
                nbytes += self.lake_bytes[dep] or 0
            else:
                rows += self._rows(dep, done) or 0
        return nbytes >= HEAVY_LAKE_BYTES or rows >= HEAVY_INPUT_ROWS

    def light(self, key: str, done: Mapping[str, Built]) -> bool:
        asset = self.graph.assets[key]
        deps = self.graph.deps[key]
        if not deps or asset.python is not None or not asset.sql or _TABLE_FUNCTION.search(asset.sql):
            return False
        own = self.last.get(key)
        if own is not None and (own.seconds is None or own.seconds >= LIGHT_LAST_SECONDS):
            return False
        nbytes = rows = 0
        for dep in deps:
            if dep in self.lake_bytes:
                size = self.lake_bytes[dep]
                if size is None:
                    return False
                nbytes += size
                continue
            counted = self._rows(dep, done)
            if counted is None:
                return False
            rows += counted
        return nbytes < LIGHT_LAKE_BYTES and rows < LIGHT_INPUT_ROWS

    def _rows(self, dep: str, done: Mapping[str, Built]) -> int | None:
        built = done.get(dep)
        if built is not None and built.rows is not None:
            return built.rows
        last = self.last.get(dep)
        return last.rows if last is not None else None


def sizing(graph: Graph, last: Mapping[str, LastBuild]) -> Sizing:
    """The sizing of ``graph``'s builds, with the Parquet bytes of every lake table and ``last`` builds' rows."""
    lake = {k: _folder_bytes(graph.assets[k].path) for k in graph.order if graph.assets[k].layer == "lake"}
    return Sizing(graph, lake, last)


def _folder_bytes(folder: Path) -> int | None:
    """The bytes of the Parquet files under ``folder`` (None: there is none)."""
    total, files = 0, 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if name.endswith(".parquet"):
                total += os.path.getsize(os.path.join(dirpath, name))
                files += 1
    return total if files else None
