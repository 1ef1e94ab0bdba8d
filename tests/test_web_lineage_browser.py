"""The lineage view at 5,000 assets and a run's page at 502 assets, in Debian's chromium (Playwright).

The 5,000-asset graph is generated in memory (loading a 5,000-model project takes half a minute, too long for
CI; bench/lineage.py measures that end to end) and served by the real console in place of the small shop's
graph: the page, its layout, its drawing and its script are the ones users get. The 502-asset run is written to
the state store directly, the way a run records its attempts.
"""

from __future__ import annotations

import random
import shutil
import statistics
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kiban.graph import Graph
from kiban.project.asset import Asset
from tests.helpers.browser import browser_sign_in, chromium, need_chromium, shot
from tests.helpers.console import PASSWORD, bearer, run
from tests.helpers.live import serving, wait_until
from tests.helpers.timing import wait_for, within

# ms on an idle machine, scaled by its measured slowdown when loaded; the target is 1 s (bench/lineage.py owns the
# figure: 308 ms at 5,000 assets in bench/RESULTS.md)
FIRST_PAINT_CI = 1500.0


def big_graph(n: int = 5000, seed: int = 11) -> Graph:
    """Sources, then warehouse tables each reading two of the 80 before it, then marts."""
    rng = random.Random(seed)
    assets: dict[str, Asset] = {}
    deps: dict[str, tuple[str, ...]] = {}
    keys: list[str] = []
    for i in range(n):
        layer = "lake" if i < 25 else ("warehouse" if i < n * 0.8 else "mart")
        asset = Asset(layer, f"table_{i:04d}", Path(f"t{i}.sql"))  # type: ignore[arg-type]
        assets[asset.key] = asset
        near = keys[max(0, i - 80):]
        deps[asset.key] = () if layer == "lake" else tuple(rng.sample(near, k=min(2, len(near))))
        keys.append(asset.key)
    return Graph(assets, deps)


@pytest.fixture(scope="module")
def site(console_template: tuple[Path, dict[str, str], int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    need_chromium()
    root = tmp_path_factory.mktemp("lineage-browser") / "shop"
    shutil.copytree(console_template[0], root)
    orders = root / "models/warehouse/orders.yml"  # a personal-data column, for the console's sidebar
    orders.write_text(orders.read_text() + "  - name: store\n    description: the store\n    tags: [pii]\n")
    run(root)  # the run confirms the table under its new YAML (until then the console masks the model whole)
    with serving(root) as (base, app):
        yield base, app, root


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _context(browser: Any, base: str, who: str = "viewer") -> Any:
    """A browser context at 1440×900 signed in (new tabs share the session)."""

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", who)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.close()
    return context


def _frame_after_load(page: Any) -> float:
    return float(page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => "
                               "r(performance.now()))))"))


def _view(page: Any) -> list[float]:
    return [float(v) for v in page.locator("#lineage").get_attribute("viewBox").split()]


def test_5000_assets_paint_fast_and_find_focus_and_keys_work(site, browser):
    base, app, _root = site
    served = app.state.site
    real = served.graph
    served.graph = big_graph()
    try:
        context = _context(browser, base)
        errors: list[str] = []

        def three_loads() -> tuple[list[float], list[float], Any]:
            paints, ready, page = [], [], None
            for _ in range(3):  # a fresh tab each time: paint timings are per document
                if page is not None:
                    page.close()
                page = context.new_page()
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
                page.goto(base + "/graph", wait_until="load")
                ready.append(_frame_after_load(page))
                paints.append(float(page.evaluate(
                    "() => new Promise(r => { const seen = () => { const e = performance.getEntriesByName("
                    "'first-contentful-paint')[0]; if (e) r(e.startTime); else setTimeout(seen, 20); }; seen(); "
                    "})")))
            return paints, ready, page

        def slower(loads: tuple[list[float], list[float], Any]) -> float:
            """The median first paint, or half the median first frame after load if that is later, in seconds."""
            return max(statistics.median(loads[0]), statistics.median(loads[1]) / 2) / 1000

        # the limit scaled by the machine's speed measured around the loads (tests/helpers/timing.py): on an idle
        # machine it is the limit itself; a retry forgives a burst of load, never a missing box or a console error
        _paints, _ready, page = within(FIRST_PAINT_CI / 1000, three_loads, measure=slower,
                                       what="the 5,000-asset lineage page's first paint")
        assert page.locator("h1 small").inner_text() == "5,000 assets"
        # every box drawn, labels only for what is in view (opened readable, on the middle of the sources)
        assert page.locator("#lineage path.boxes").count() > 0
        shown = page.locator("#lineage a.node").count()
        assert 10 < shown < 600, shown
        label = page.locator("#lineage a.node text").first.bounding_box()
        assert label
        assert label["height"] >= 8
        shot(page, "graph-5000")

        # Find: Enter jumps to the match, and its label is drawn there
        page.fill("#graph-find", "table_4321")
        assert "1 found" in page.locator("#graph-count").inner_text()
        page.press("#graph-find", "Enter")
        wait_until(lambda: page.locator("#lineage a.node[data-key='mart.table_4321']").count() == 1)
        assert page.locator("#lineage a.node.hit").count() == 1
        assert page.locator("#hits").get_attribute("d").startswith("M")

        # keys on the graph: - zooms out, 0 fits everything (labels go), 1 back to natural size
        page.focus("#lineage")
        before = _view(page)
        page.keyboard.press("-")
        wait_until(lambda: _view(page)[2] > before[2] * 1.2)
        page.keyboard.press("ArrowRight")
        wait_until(lambda: _view(page)[0] != before[0])
        page.keyboard.press("0")
        wait_until(lambda: "far" in (page.locator("#lineage").get_attribute("class") or ""))
        wait_until(lambda: page.locator("#lineage a.node").count() == 0)
        page.keyboard.press("1")
        wait_until(lambda: page.locator("#lineage a.node").count() > 0)

        # focus from a hit: +asset+ two steps each way, opened on it, arrowheads drawn
        page.fill("#graph-find", "table_2500")
        page.click("#graph-hits a")
        page.wait_for_url("**/graph?focus=*")
        assert "depth=2" in page.url
        count = page.locator("#lineage a.node").count()
        assert 3 <= count <= 40, count
        assert page.locator("#lineage").get_attribute("data-centre") == "warehouse.table_2500"
        assert page.locator("#lineage path.arrows").count() >= 1
        assert page.locator("select[name=depth] option[selected]").inner_text() == "2"
        assert not errors, errors
    finally:
        served.graph = real
        served.forget()


def _store_run(root: Path, n: int) -> str:
    """A finished run of ``n`` assets in three layers, one failed and two skipped."""
    from kiban.project import load_project
    from kiban.status import AttemptStatus, RunStatus
    from kiban.store import Store, utcnow

    store = Store(load_project(root).state_url)
    run_id = f"{utcnow():%Y%m%dT%H%M%S}-5020aa"
    store.start_run(run_id, "webshop", ["big"], {})
    t0 = utcnow() - timedelta(minutes=20)
    rows = []
    for i in range(n):
        layer = "lake" if i < 40 else "warehouse" if i < 400 else "mart"
        start = t0 + timedelta(seconds=i * 2)
        status = (AttemptStatus.FAILED if i == 450 else AttemptStatus.SKIPPED if i in (451, 452)
                  else AttemptStatus.SUCCESS)
        rows.append(dict(run_id=run_id, asset=f"{layer}.t{i:03d}", status=status, attempt=1, started_at=start,
                         ended_at=start + timedelta(seconds=1 + i % 7), rows=1000 + i, bytes=None, fingerprint=None,
                         error="boom" if status == AttemptStatus.FAILED else None, watermark=None))
    store.record_attempts(rows)
    store.finish_run(run_id, RunStatus.FAILED)
    store.close()
    return run_id


def test_a_502_asset_run_groups_and_scrolls_instead_of_a_23800_px_page(site, browser):
    base, _app, root = site
    run_id = _store_run(root, 502)
    page = browser_sign_in(browser, base, "viewer")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{base}/runs/{run_id}")
    groups = page.locator("details.tl-group")
    assert groups.count() == 3
    assert page.locator("details.tl-group[data-group=mart][open]").count() == 1  # its failure shows
    assert page.locator("details.tl-group[data-group=warehouse][open]").count() == 0  # 360 fine ones fold
    assert "✕failed 1" in page.locator("details.tl-group[data-group=mart] summary").inner_text()
    tall = page.evaluate("() => document.documentElement.scrollHeight")
    assert tall < 4000, f"the run page is {tall} px tall"
    page.click("details.tl-group[data-group=warehouse] summary")
    frame = page.evaluate("() => { const f = document.querySelector('.timeline-frame'); "
                          "return [f.scrollHeight, f.clientHeight]; }")
    assert frame[0] > frame[1]
    assert frame[1] <= 600  # the timeline scrolls inside its frame
    assert page.locator("table.attempts.problems tbody tr").count() == 3
    assert page.locator("table.attempts.built tbody tr").count() == 50
    assert "499 assets built or fresh" in page.inner_text("main")
    shot(page, "run-502")
    page.click("#all-attempts")
    page.wait_for_url("**attempts=all")
    assert page.locator("table.attempts.built tbody tr").count() == 499
    assert not page.errors, page.errors


def test_a_run_started_elsewhere_shows_what_builds_inferred_and_its_eta(site, browser):
    """A run of `kiban run` (not this console's): what builds is inferred from what finished."""
    from kiban.project import load_project
    from kiban.status import AttemptStatus, RunStatus
    from kiban.store import Store, utcnow

    base, _app, root = site
    store = Store(load_project(root).state_url)
    run_id = f"{utcnow():%Y%m%dT%H%M%S}-0ther1"
    store.start_run(run_id, "webshop", ["+mart.daily_sales"], {})  # this process's pid: alive, not reaped
    began = utcnow() - timedelta(seconds=3)
    store.record_attempt(run_id, "warehouse.orders", AttemptStatus.SUCCESS, started_at=began,
                         ended_at=began + timedelta(seconds=1), rows=200)
    try:
        page = browser_sign_in(browser, base, "viewer")
        page.goto(f"{base}/runs/{run_id}")
        text = page.locator("#in-flight").inner_text()
        assert "1 of 2 done" in text
        assert "(inferred)" in text
        assert page.locator("#in-flight tr[data-asset='mart.daily_sales']").count() == 1
        assert "left" in page.locator("#eta").inner_text() or "no estimate" in page.locator("#eta").inner_text()
        body = page.inner_text("main")
        assert "running for" in body
        assert " took " not in body
        assert page.locator("details.tl-group .bar.b-building").count() == 1  # drawn up to now, marked ▶
        assert not page.errors, page.errors
    finally:
        store.finish_run(run_id, RunStatus.SUCCESS)
        store.close()


def test_a_running_run_shows_what_builds_what_waits_and_when_it_ends(site, browser, console_template):
    import httpx


    base, _app, root = site
    slow = "select id, store, amount, day from lake.orders where (select sum(hash(i)) from range({n}) t(i)) > 0\n"
    (root / "models/warehouse/orders.sql").write_text(slow.format(n=120_000_000))  # a second or two to build
    operator = bearer(console_template[1]["operator"])
    try:
        job = httpx.post(base + "/api/v1/actions/run", json={"selection": ["+mart.daily_sales"]}, headers=operator,
                         timeout=30).json()
        run_id = wait_for(lambda: httpx.get(f"{base}/api/v1/jobs/{job['id']}", headers=operator,
                                            timeout=30).json()["run_id"], 120, 0.1, "the job's run to start")
        page = browser_sign_in(browser, base, "viewer")
        page.goto(f"{base}/runs/{run_id}")
        if page.locator("h1 .pill.s-running").count():
            flight = page.locator("#in-flight")
            assert flight.is_visible()
            text = flight.inner_text()
            assert "of 2 done" in text
            assert "left" in text or "no estimate" in text
            assert page.locator("#in-flight tr[data-asset='warehouse.orders']").count() == 1  # exact: our job
            assert "(inferred)" not in text
            body = page.inner_text("main")
            assert "running for" in body
            assert " took " not in body  # never "took 5.45 s" while it goes
            assert "1 queued" in text  # mart.daily_sales waits for its input
        page.wait_for_selector("h1 .pill:not(.s-running)", timeout=90_000)
        assert page.locator("#in-flight").count() == 0
        assert "took" in page.inner_text("main")
        assert not page.errors, page.errors
    finally:
        (root / "models/warehouse/orders.sql").write_text("select id, store, amount, day from lake.orders\n")
        run(root, select=["warehouse.orders"])  # built from the SQL it has again (else the console masks it whole)


def test_the_sql_console_lists_the_schema_completes_names_and_runs_on_ctrl_enter(site, browser):
    base, _app, _root = site
    context = _context(browser, base, "analyst")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(base + "/console")
    table = page.locator("#schema-list details[data-table='warehouse.orders']")
    assert table.count() == 1
    table.locator("summary").click()
    assert table.locator("li[data-column=store] .masked-col").inner_text() == "masked"  # personal data, marked
    assert table.locator("li[data-column=amount] .masked-col").count() == 0
    page.fill("#schema-filter", "amount")
    assert page.locator("#schema-list details[data-table='mart.daily_sales']").is_hidden()
    page.fill("#schema-filter", "")

    area = page.locator("#sql")
    area.click()
    page.keyboard.type("select id, am")  # nothing named yet: no column of a known table
    page.keyboard.type("ount from wareh")
    assert page.locator("#sql-complete").is_visible()
    assert page.locator("#sql-complete li[aria-selected=true]").inner_text() == "warehouse.orders"
    page.keyboard.press("Tab")
    assert area.input_value() == "select id, amount from warehouse.orders"
    page.keyboard.type(" where sto")  # a column of the table the query reads, marked masked
    assert "store · masked" in page.locator("#sql-complete li").first.inner_text()
    page.keyboard.press("Escape")
    assert page.locator("#sql-complete").is_hidden()
    area.fill("select id, amount from warehouse.orders where amount > 0 order by id limit 3")
    area.press("Control+Enter")  # runs
    page.wait_for_url(base + "/console")
    page.wait_for_selector("table.result tbody tr, #query-error")
    assert page.locator("#query-error").count() == 0, page.locator("#query-error").inner_text()
    assert page.locator("table.result tbody tr").count() == 3
    # the sidebar inserts at the caret
    area.fill("select * from ")
    area.press("End")
    page.locator("#schema-list details[data-table='mart.daily_sales'] summary button").click()
    assert area.input_value() == "select * from mart.daily_sales"
    shot(page, "console-editor")
    assert not errors, errors
    context.close()
