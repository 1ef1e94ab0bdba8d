"""How big a build is (kiban.run.sizing): light builds — every input known and under one DuckDB row group — run
on one thread while only they run; anything unknown, a table function, a slow last build or a build running
past LIGHT_SECONDS gets the shared threads back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiban.engines.duckdb import DuckDBEngine
from kiban.errors import ProjectError
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.run import sizing as sizing_module
from kiban.run.sizing import LIGHT_INPUT_ROWS, LastBuild, sizing

SMALL_LAKE = {"src": "select i as k, i * 1.0 as v from range(1000) t(i)"}


@dataclass
class Rows:
    rows: int | None


def _graph(make_project: Callable[..., Path], models: dict[str, str], lake: dict[str, Any] | None = None) -> Any:
    return build_graph(load_project(make_project(models, lake=SMALL_LAKE if lake is None else lake)))


@pytest.mark.parametrize(("sql", "done", "last", "light"), [
    ("select k from lake.src", {}, {}, True),  # a small lake table
    ("select 1 as k", {}, {}, False),  # no input: rows from nowhere the inputs say
    ("select k from lake.src, range(1000000) r", {}, {}, False),  # a table function
    ("select * from read_parquet('big/*.parquet') join lake.src using (k)", {}, {}, False),
    ("select k, 'x' as tag from lake.src", {}, {}, True),  # a string literal is no file read
    ("select k from warehouse.up", {}, {}, False),  # the input's rows are not known yet
    ("select k from warehouse.up", {"warehouse.up": Rows(5)}, {}, True),  # built in this run, small
    ("select k from warehouse.up", {}, {"warehouse.up": LastBuild(5, 0.1)}, True),  # its last build, small
    ("select k from warehouse.up", {"warehouse.up": Rows(LIGHT_INPUT_ROWS)}, {}, False),
    ("select k from warehouse.up", {"warehouse.up": Rows(None)}, {}, False),
    ("select k from warehouse.up", {"warehouse.up": Rows(5)}, {"warehouse.me": LastBuild(5, 0.9)}, False),  # slow
    ("select k from warehouse.up", {"warehouse.up": Rows(5)}, {"warehouse.me": LastBuild(5, None)}, False),
])
def test_a_build_is_light_only_when_everything_it_reads_is_known_and_small(
        make_project: Callable[..., Path], sql: str, done: dict[str, Rows], last: dict[str, LastBuild],
        light: bool) -> None:
    graph = _graph(make_project, {"models/warehouse/up.sql": "select k, v from lake.src",
                                  "models/warehouse/me.sql": sql})
    assert sizing(graph, last).light("warehouse.me", done) is light


@pytest.mark.parametrize("sql", ["select * from lake.src join 'big.parquet' b using (k)",
                                 "select * from lake.src, 'big.csv' b"])
def test_a_file_read_by_its_quoted_name_never_reaches_sizing(make_project: Callable[..., Path], sql: str) -> None:
    """Rows sizing cannot see: the project refuses them on loading (an unknown table), so no build is judged light
    over them."""
    with pytest.raises(ProjectError, match="unknown table"):
        _graph(make_project, {"models/warehouse/me.sql": sql})


def test_a_lake_table_without_local_parquet_is_of_unknown_size(make_project: Callable[..., Path]) -> None:
    graph = _graph(make_project, {"models/warehouse/me.sql": "select * from lake.src"}, lake={"src": None})
    assert not sizing(graph, {}).light("warehouse.me", {})
    assert not sizing(graph, {}).heavy("warehouse.me", {})


def test_lake_bytes_decide_light_and_heavy(make_project: Callable[..., Path], monkeypatch: Any) -> None:
    graph = _graph(make_project, {"models/warehouse/me.sql": "select * from lake.src"})
    judged = sizing(graph, {})
    assert judged.light("warehouse.me", {})
    monkeypatch.setattr(sizing_module, "LIGHT_LAKE_BYTES", 1)
    monkeypatch.setattr(sizing_module, "HEAVY_LAKE_BYTES", 1)
    assert not judged.light("warehouse.me", {})
    assert judged.heavy("warehouse.me", {})


def _shares(monkeypatch: Any) -> list[tuple[int, bool]]:
    shares: list[tuple[int, bool]] = []
    real = DuckDBEngine.share
    monkeypatch.setattr(DuckDBEngine, "share", lambda self, running, light=False: (
        shares.append((running, light)), real(self, running, light)))
    return shares


def test_light_builds_run_on_one_thread_and_what_follows_gets_every_thread(
        make_project: Callable[..., Path], monkeypatch: Any) -> None:
    models = {f"models/warehouse/w{i}.sql": f"select k, v * {i} as v from lake.src" for i in range(6)}
    models["models/mart/total.sql"] = "select sum(v) as s from warehouse.w0"
    models["models/mart/made.sql"] = "select i from range(10) t(i)"  # no input: not light
    root = make_project({**models, "kiban.yml": "name: light\nthreads: 2\n"}, lake=SMALL_LAKE)
    shares = _shares(monkeypatch)
    assert run_project(load_project(root), RunOptions()).ok
    assert (1, True) in shares or (2, True) in shares
    assert any(not light and running for running, light in shares)  # mart.made ran with the shared threads
    assert shares[-1] == (1, False)


def test_a_light_build_running_long_gets_the_shared_threads_back(make_project: Callable[..., Path],
                                                                 monkeypatch: Any) -> None:
    """Tiny inputs may still explode (a cross join): past LIGHT_SECONDS the build is light no more."""
    wide = "select sum(a.v * b.v + c.v) as n from lake.src a, lake.src b, lake.src c"
    root = make_project({"models/warehouse/wide.sql": wide,
                         "kiban.yml": "name: light\nthreads: 1\n"},
                        lake={"src": "select i * 1.0 as v from range(400) t(i)"})
    monkeypatch.setattr("kiban.run.executor.LIGHT_SECONDS", 0.05)
    shares = _shares(monkeypatch)
    assert run_project(load_project(root), RunOptions()).ok  # 64 million rows summed: well over 0.05 s
    first = shares.index((1, True))  # judged light when it started
    assert (1, False) in shares[first:-1]  # and given the shared threads while it ran (the last: after the builds)
