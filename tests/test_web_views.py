"""The console's drawings and shared caches: a 500-asset lineage stays readable, live pages know a run is going,
a stale shared value is answered at once while one refresh runs."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from kiban.graph import Graph
from kiban.project import Asset
from kiban.web import lineage, svg
from tests.helpers.console import FIXED_SQL, add_users, bearer, build_project, sign_in


def _graph(n: int, seed: int = 3) -> Graph:
    rng = random.Random(seed)
    assets: dict[str, Asset] = {}
    deps: dict[str, tuple[str, ...]] = {}
    keys: list[str] = []
    for i in range(n):
        layer = "lake" if i < 20 else ("warehouse" if i < 400 else "mart")
        asset = Asset(layer, f"a{i:03d}", Path(f"a{i}.sql"))  # type: ignore[arg-type]
        assets[asset.key] = asset
        ups = () if layer == "lake" else tuple(rng.sample(keys[max(0, i - 80):], k=min(3, len(keys[max(0, i - 80):]))))
        deps[asset.key] = ups
        keys.append(asset.key)
    return Graph(assets, deps)


def test_the_lineage_layout_of_500_assets_is_layered_and_nothing_overlaps():
    graph = _graph(500)
    at, width, height = svg.layout(graph, graph.order)
    assert len(at) == 500
    for key, ups in graph.deps.items():
        for up in ups:
            assert at[up][0] < at[key][0], f"{up} must sit left of {key}"
    spots = {(round(x), round(y)) for x, y in at.values()}
    assert len(spots) == 500  # no two boxes on top of each other
    assert all(x + svg.NODE_W <= width and y + svg.NODE_H <= height for x, y in at.values())
    picture = lineage.draw(graph, graph.order, {}, at, (width, height))
    assert picture.count('class="node st-never_run"') == 500
    assert picture.count("C") == sum(map(len, graph.deps.values()))  # one curve per edge, in one path
    assert picture.count("l-7,-3.5v7z") == sum(1 for ups in graph.deps.values() if ups)  # an arrowhead per input


def test_the_layout_orders_rows_to_follow_their_inputs():
    graph = _graph(500)
    at, _, _ = svg.layout(graph, graph.order)

    def crossings(pos: dict[str, tuple[float, float]]) -> int:
        edges = [(pos[u], pos[k]) for k, ups in graph.deps.items() for u in ups if pos[k][0] - pos[u][0] < 300]
        count = 0
        for i, (a1, b1) in enumerate(edges[:400]):
            for a2, b2 in edges[i + 1:400]:
                if a1[0] == a2[0] and b1[0] == b2[0] and (a1[1] - a2[1]) * (b1[1] - b2[1]) < 0:
                    count += 1
        return count

    alphabetical = {}
    for column in {x for x, _ in at.values()}:
        keys = sorted(k for k, (x, _) in at.items() if x == column)
        alphabetical.update({k: (column, float(i)) for i, k in enumerate(keys)})
    assert crossings(at) < crossings(alphabetical)  # the barycentre sweeps remove crossings


def test_charts_draw_their_points_and_say_when_there_is_nothing():
    from datetime import datetime, timedelta

    start = datetime(2026, 11, 1)
    chart = svg.line_chart([(start + timedelta(days=i), float(i * 10)) for i in range(5)], "rows")
    assert chart.count("<circle") == 5
    assert "40" in chart
    assert "no data yet" in svg.line_chart([], "rows")
    gantt = svg.gantt([("a", start, start + timedelta(seconds=3), "success"),
                       ("b", start + timedelta(seconds=3), start + timedelta(seconds=4), "failed")])
    assert gantt.count("<rect") == 2
    assert "#dc2626" in gantt
    assert "4.00 s" in gantt


def test_today_and_runs_go_live_while_a_run_is_going(console):
    from kiban.project import load_project
    from kiban.store import Store

    client, root, tokens, _incident = console
    sign_in(client, "viewer")
    assert 'data-live="0"' in client.get("/").text
    store = Store(load_project(root).state_url)
    try:
        store.start_run("20991231T000000-aaaaaa", "webshop", ["mart.daily_sales"], {})  # this process: alive
        client.app.state.site.forget()
        page = client.get("/").text
        assert 'data-live="1"' in page
        assert "Running now" in page
        assert "20991231T000000-aaaaaa" in page
        assert 'data-live="1"' in client.get("/runs").text
        today = client.get("/api/v1/today", headers=bearer(tokens["viewer"])).json()
        assert [r["run_id"] for r in today["running"]] == ["20991231T000000-aaaaaa"]
    finally:
        store.close()


def test_a_stale_shared_value_is_answered_at_once_while_one_refresh_runs(console):
    client, *_ = console
    site = client.app.state.site
    calls: list[int] = []
    release = threading.Event()

    def slow() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(60)
        return len(calls)

    assert site.cached("k", 0.05, slow) == 1
    time.sleep(0.1)  # past the value's 0.05 s: it is stale now (a longer sleep on a loaded machine changes nothing)
    began = time.monotonic()
    answers = [site.cached("k", 0.05, slow) for _ in range(5)]
    assert answers == [1] * 5
    # nobody waited for the slow refresh: it is held until release is set (60 s), so a caller that waited would
    # take a minute; 30 s tells the two apart however loaded the machine is (1 s did not)
    assert time.monotonic() - began < 30
    release.set()
    deadline = time.monotonic() + 30
    while site.cached("k", 60, slow) != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert site.cached("k", 60, slow) == 2
    assert len(calls) == 2  # exactly one refresh ran


def test_an_assets_history_and_charts_are_kept_until_its_next_build_or_check(console):
    """The asset page reuses what it read and drew for an asset until a new attempt or check result is recorded
    (here by runs in this process that the server knows nothing of: only the store tells)."""
    from kiban import operate
    from kiban.project import load_project
    from kiban.run import RunOptions

    client, root, tokens, _incident = console
    head = bearer(tokens["viewer"])
    sign_in(client, "viewer")
    before = client.get("/api/v1/assets/mart.daily_sales", headers=head).json()
    assert [r["status"] for r in before["runs"]] == ["failed"]
    assert "<circle" not in client.get("/assets/mart.daily_sales").text  # no successful build to draw yet
    assert client.get("/api/v1/assets/mart.daily_sales", headers=head).json() == before  # kept: nothing new
    orders = client.get("/api/v1/assets/warehouse.orders", headers=head).json()
    assert orders["checks"] == []  # the first run had no gate
    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)
    done = operate.run(load_project(root), RunOptions(select=["warehouse.orders+"], full_refresh=True))
    assert done.result.status == "success"
    assert done.gated
    deadline = time.monotonic() + 30  # the store's pulse is shared for half a second (kept forever without it)
    while len((after := client.get("/api/v1/assets/mart.daily_sales", headers=head).json())["runs"]) < 2:
        assert time.monotonic() < deadline, "the asset page kept its old history after a run"
        time.sleep(0.1)
    assert [r["status"] for r in after["runs"]] == ["success", "failed"]
    assert "<circle" in client.get("/assets/mart.daily_sales").text  # the chart drawn again for the new build
    orders = client.get("/api/v1/assets/warehouse.orders", headers=head).json()
    assert {c["status"] for c in orders["checks"]} == {"pass"}
    assert len(orders["checks"]) >= 2


def test_the_shared_assessment_follows_the_store_not_a_timer(console):
    """Today's verdicts are computed again when a run is recorded (by any process), not only when a timer says."""
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project

    client, root, tokens, _incident = console
    head = bearer(tokens["viewer"])
    site = client.app.state.site

    def verdict() -> dict:
        return client.get("/api/v1/today", headers=head).json()["usecases"][0]

    first = verdict()
    computed = site._seen["assessment"]
    assert verdict() == first
    assert site._seen["assessment"] is computed  # nothing happened: the same assessment
    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)
    assert run_project(load_project(root), RunOptions()).status == "success"
    deadline = time.monotonic() + 30  # well under ASSESS_TTL (60 s): a timer alone would not pass
    while site._seen["assessment"] is computed and time.monotonic() < deadline:  # the stale one is answered meanwhile
        verdict()
        time.sleep(0.1)
    assert site._seen["assessment"] is not computed  # computed again after the run, long before ASSESS_TTL


def test_a_focus_follows_its_depth_up_and_down_and_a_bare_name_both_ways():
    graph = _graph(500)
    key = graph.order[300]
    one_up = lineage.focus(graph, [f"+{key}"], 1)
    assert one_up == {key, *graph.deps[key]}
    both = lineage.focus(graph, [key], 2)
    ups2 = {u for d in graph.deps[key] for u in graph.deps[d]} | set(graph.deps[key])
    downs2 = {c for d in graph.children[key] for c in graph.children[d]} | set(graph.children[key])
    assert both == {key} | ups2 | downs2
    assert lineage.focus(graph, [f"+{key}+"], None) == {key} | graph.upstream(key) | graph.downstream(key)
    assert lineage.focus(graph, [key], None) == {key}  # no depth: selection syntax as the CLI reads it


def test_every_state_is_told_by_an_icon_and_a_class_not_colour_alone():
    graph = _graph(40)
    at, width, height = svg.layout(graph, graph.order)
    keys = graph.order[:6]
    states = dict(zip(keys, ["success", "fresh", "failed", "skipped", "lake", "never run"], strict=True))
    picture = lineage.draw(graph, graph.order, states, at, (width, height), centre=keys[2])
    for key, icon, klass in zip(keys, "✓✓✕↷◆○", ["success", "fresh", "failed", "skipped", "lake", "never_run"],
                                strict=True):
        assert f'class="node st-{klass}" data-key="{key}"' in picture
        assert f">{icon} {key}</text>" in picture
    assert f'data-centre="{keys[2]}"' in picture


def test_the_console_speaks_the_readers_language_and_formats_numbers_for_it(tmp_path):
    """Accept-Language picks Japanese, the footer's link (a cookie) overrides it; numbers are grouped."""
    from fastapi.testclient import TestClient

    from kiban.web import create_app, i18n

    root = build_project(tmp_path / "shop")
    add_users(root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        sign_in(client, "viewer")
        english = client.get("/graph").text
        assert '<html lang="en">' in english
        assert ">Lineage</a>" in english
        japanese = client.get("/graph", headers={"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"}).text
        assert '<html lang="ja">' in japanese
        assert ">系譜</a>" in japanese
        assert "本文へ移動" in japanese
        assert "件のアセット" in japanese
        moved = client.get("/lang/en", params={"next": "/graph"}, headers={"Accept-Language": "ja"},
                           follow_redirects=False)
        assert moved.status_code == 303
        assert moved.headers["location"] == "/graph"
        chosen = client.get("/graph", headers={"Accept-Language": "ja"}).text
        assert '<html lang="en">' in chosen  # the reader's choice wins over the browser's
        hostile = client.get("/lang/ja", params={"next": "//evil.example/"}, follow_redirects=False)
        assert hostile.headers["location"] == "/"  # never an open redirect
    assert i18n.number(1528380, "ja") == "1,528,380"
    assert i18n.number(0.013148, "en") == "0.013"
    assert i18n.number(1528380.5, "en") == "1,528,380.5"
    assert i18n.number(None, "ja") == "–"
    assert i18n.messages("en") == {}
    assert i18n.messages("ja")["Today"] == "今日"
