"""The console in a real browser (Debian's chromium driven by Playwright) against a real uvicorn server on a
free loopback port: sign in, read the board, open an asset and its charts, resume a failed run as an operator,
be refused as a viewer, draw the lineage. Screenshots go to docs/images/ for docs/web.md
(with KIBAN_SCREENSHOTS=1)."""

from __future__ import annotations

from tests.helpers.browser import browser_sign_in, shot
from tests.helpers.console import FIXED_SQL, add_users, bearer
from tests.helpers.live import serving, wait_until


def test_operator_reads_the_board_opens_an_asset_and_resumes_the_failed_run(server, browser):
    base, root = server
    page = browser_sign_in(browser, base, "operator")
    row = page.locator("tr.uc[data-usecase=morning_sales]")
    assert row.count() == 1
    assert "Store managers read" in row.inner_text()
    assert page.locator("text=1 open incident").count() == 1
    shot(page, "today")

    page.goto(base + "/assets/warehouse.orders")
    chart = page.locator("#duration-chart svg")
    assert chart.is_visible()
    assert chart.locator("circle").count() >= 1
    assert page.locator("text=total in yen, tax included").is_visible()
    shot(page, "asset")

    page.goto(base + "/incidents/1")
    assert page.locator("text=kiban run --resume").first.is_visible()
    shot(page, "incident")

    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)  # the fix, then the workaround
    page.goto(base + "/runs")
    page.locator("table.runs a").first.click()
    assert page.locator("svg.gantt").first.is_visible()  # one per layer group
    page.click("#resume")
    page.wait_for_url(f"{base}/jobs/*")
    page.wait_for_selector("#job-status.s-success", timeout=60_000)  # the page updates itself until it ends
    page.locator("main a[href^='/runs/']").click()
    page.wait_for_selector("text=mart.daily_sales")
    assert page.locator("h1 .pill.s-success").is_visible()
    shot(page, "run")
    page.goto(base + "/runs")
    shot(page, "runs")
    assert not page.errors, page.errors  # no script errors, nothing blocked by the content security policy


def test_a_viewer_is_refused_the_operators_action(server, browser):
    base, _root = server
    page = browser_sign_in(browser, base, "viewer")
    page.goto(base + "/incidents/1")
    assert page.locator("form[action='/actions/resume']").count() == 0  # no button to press
    # and forging the request from the page (with a valid CSRF token) is refused by the server
    status = page.evaluate("""async () => {
        const csrf = document.querySelector("input[name=csrf]").value;
        const r = await fetch("/actions/resume", {method: "POST", body: new URLSearchParams({csrf}),
                                                  redirect: "manual"});
        return r.status; }""")
    assert status == 403
    page.goto(base + "/api/v1/runs")
    assert '"running":false' in page.content().replace(" ", "")


def test_the_lineage_graph_renders_and_links_to_assets(server, browser):
    base, _root = server
    page = browser_sign_in(browser, base, "viewer")
    page.goto(base + "/graph")
    nodes = page.locator("#lineage a.node")
    assert nodes.count() == 3
    box = page.locator("#lineage").bounding_box()
    assert box
    assert box["width"] > 300
    before = page.locator("#lineage").get_attribute("viewBox")
    page.mouse.move(box["x"] + 200, box["y"] + 100)
    page.mouse.wheel(0, -300)  # zoom in
    wait_until(lambda: page.locator("#lineage").get_attribute("viewBox") != before)
    page.click("#zoom-reset")
    shot(page, "graph")
    page.locator("#lineage a.node[data-key='warehouse.orders']").click()
    page.wait_for_url(base + "/assets/warehouse.orders")
    assert not page.errors, page.errors


def test_a_500_asset_lineage_opens_readable_and_zooms_out_to_all(browser, tmp_path):
    """500 assets: the page opens at natural size (labels readable), Fit shows the whole graph."""
    import random


    rng = random.Random(5)
    root = tmp_path / "big"
    (root / "models/warehouse").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: big\ntimezone: UTC\n")
    keys = []
    for i in range(20):
        (root / "lake" / f"src{i:02d}").mkdir(parents=True)
        keys.append(f"lake.src{i:02d}")
    for i in range(480):
        ups = rng.sample(keys[max(0, len(keys) - 60):], k=2)
        sql = f"select * from {ups[0]} union all select * from {ups[1]}\n"
        (root / f"models/warehouse/w{i:03d}.sql").write_text(sql)
        keys.append(f"warehouse.w{i:03d}")
    add_users(root)
    with serving(root) as (base, _app):
        page = browser_sign_in(browser, base, "viewer")
        page.goto(base + "/graph")
        assert page.locator("#lineage a.node").count() == 500
        label = page.locator("#lineage a.node text").first.bounding_box()
        assert label
        assert label["height"] >= 8  # readable as it opens, not a speck
        shot(page, "graph-500")

        def width() -> float:
            return float(page.locator("#lineage").get_attribute("viewBox").split()[2])

        opened = width()
        page.click("#zoom-reset")
        wait_until(lambda: width() > opened * 1.2)  # Fit: the whole graph
        assert not page.errors, page.errors


def test_today_runs_and_a_runs_gantt_update_themselves_while_a_run_goes(server, browser, console_template):
    """Server-sent events: the pages change without a reload while a run started elsewhere goes and ends."""
    import httpx


    base, root = server
    slow = "select id, store, amount, day from lake.orders where (select sum(hash(i)) from range({n}) t(i)) > 0\n"
    (root / "models/warehouse/orders.sql").write_text(slow.format(n=200_000_000))  # a few seconds to build
    operator = bearer(console_template[1]["operator"])
    page = browser_sign_in(browser, base, "viewer")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    page.evaluate("() => { window.kibanSameDocument = true; }")  # gone if the page were reloaded
    assert page.locator("p.banner.running").count() == 0
    httpx.post(base + "/api/v1/actions/run", json={"selection": ["warehouse.orders"]}, headers=operator, timeout=30)
    page.wait_for_selector("p.banner.running", timeout=20_000)  # Today: "Running now"
    wait_until(lambda: page.locator("p.banner.running").count() == 0, 60)  # and then it is over
    assert page.evaluate("() => window.kibanSameDocument === true")

    page.goto(base + "/runs")
    before = page.locator("table.runs tbody tr").count()
    (root / "models/warehouse/orders.sql").write_text(slow.format(n=400_000_000))
    job = httpx.post(base + "/api/v1/actions/run", json={"selection": ["warehouse.orders"]}, headers=operator,
                     timeout=30).json()
    page.evaluate("() => { window.kibanSameDocument = true; }")
    wait_until(lambda: page.locator("table.runs tbody tr").count() == before + 1, 60)  # the new run appears
    run_id = job["run_id"]  # named in the first answer, before the run is planned
    page.goto(f"{base}/runs/{run_id}")
    assert page.locator("h1 .pill.s-running").count() == 1  # opened while it goes
    page.evaluate("() => { window.kibanSameDocument = true; }")
    page.wait_for_selector("h1 .pill.s-success", timeout=60_000)  # the Gantt page follows the run to its end
    assert page.locator("svg.gantt").first.is_visible()  # one per layer group
    assert page.evaluate("() => window.kibanSameDocument === true")
    assert any("/events?since=" in u for u in streams)
    assert any(f"/events/runs/{run_id}" in u for u in streams)
    assert not page.errors, page.errors
