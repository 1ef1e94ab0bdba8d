"""The catalog in a real browser (Debian's chromium via Playwright) against a real uvicorn server: an analyst
runs a console query and downloads it as CSV, a viewer runs a recipe and sees PII masked, column lineage is
clicked through, a data request is filed and delivered. Screenshots go to docs/images/ for docs/web.md
(with KIBAN_SCREENSHOTS=1)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import browser_sign_in, need_chromium, shot
from tests.helpers.live import serving


@pytest.fixture
def server(catalog_template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    need_chromium()
    root = tmp_path / "shop"
    shutil.copytree(catalog_template[0], root)
    with serving(root) as (base, _app):
        yield base, root


def test_analyst_queries_downloads_csv_and_a_viewer_sees_pii_masked(server: Any, browser: Any,
                                                                     tmp_path: Path) -> None:
    base, _root = server
    page = browser_sign_in(browser, base, "analyst")
    page.click("header nav a[href='/console']")
    page.fill("textarea[name=sql]", "select store, count(*) as orders, sum(amount) as revenue\n"
                                    "from warehouse.orders group by store order by store")
    page.fill("input[name=team]", "stores")
    page.click("#console-form button:has-text('Run')")
    page.wait_for_selector("#result")
    cells = page.locator("#result tbody tr").first.locator("td").all_inner_texts()
    assert cells[0] == "1"
    assert int(cells[1]) > 0
    assert "read warehouse.orders" in page.locator("#result-summary").inner_text()
    assert page.locator("#history tbody tr").count() == 1
    shot(page, "console")

    with page.expect_download() as waiting:
        page.click("#console-form button:has-text('Download CSV')")
    download = waiting.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    rows = list(csv.reader(saved.open(encoding="utf-8")))
    assert download.suggested_filename == "query.csv"
    assert rows[0] == ["store", "orders", "revenue"]
    assert len(rows) == 4  # three stores

    assert not page.errors, page.errors  # no script errors, nothing blocked by the content security policy
    page.fill("textarea[name=sql]", "update warehouse.orders set amount = 0")
    page.click("#console-form button:has-text('Run')")
    assert page.locator("#query-error").is_visible()  # refused, with the catalog's message (a 400 page)

    viewer = browser_sign_in(browser, base, "viewer")
    assert viewer.locator("header nav a[href='/console']").count() == 0
    viewer.goto(base + "/recipes")
    viewer.click("a[href='/recipes/customer_mails']")
    viewer.fill("#p_upto", "5")
    viewer.click("#recipe-form button:has-text('Run')")
    viewer.wait_for_selector("#result")
    assert viewer.locator("#masked-note").is_visible()
    table = viewer.locator("#result").inner_text()
    assert "@example.com" not in table
    assert "•••" in table
    assert viewer.locator("#result th:has-text('email') .pill").inner_text() == "masked"
    shot(viewer, "recipe")
    assert not viewer.errors, viewer.errors


def _seed(base: str, tokens: dict[str, str]) -> None:
    """A few weeks' worth of use in a minute, through the API: queries, recipe runs, requests."""
    import httpx

    def call(role: str, path: str, body: Any) -> None:
        answer = httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {tokens[role]}"}, timeout=60)
        assert answer.status_code < 300, answer.text

    for team, role in (("stores", "analyst"), ("stores", "analyst"), ("crm", "admin"), ("finance", "operator")):
        call(role, "/api/v1/query", {"sql": "select store, sum(amount) from warehouse.orders group by store",
                                     "team": team})
    call("admin", "/api/v1/query", {"sql": "select count(*) from warehouse.customers", "team": "crm"})
    for store in ("1", "2", "3"):
        call("viewer", "/api/v1/recipes/store_sales/run", {"params": {"store": store}, "team": "stores"})
    call("viewer", "/api/v1/requests", {"title": "Basket size by weekday", "team": "stores",
                                        "purpose": "promotion planning", "needed_by": "2026-11-20"})
    call("operator", "/api/v1/requests", {"title": "Returns per product", "team": "finance",
                                          "needed_by": "2027-01-15"})
    call("analyst", "/api/v1/requests/2/move", {"to": "in_progress"})


def test_column_lineage_requests_and_usage_in_the_browser(server: Any, browser: Any,
                                                          catalog_template: tuple[Path, dict[str, str]]) -> None:
    base, _root = server
    _seed(base, catalog_template[1])
    page = browser_sign_in(browser, base, "analyst")
    page.goto(base + "/assets/warehouse.customers#columns")  # scrolled to the columns
    row = page.locator("#col-email_upper")
    assert "PII" in row.inner_text()
    shot(page, "asset-columns")
    row.locator("a[href='/assets/lake.customers/columns/email']").click()
    page.wait_for_url(base + "/assets/lake.customers/columns/email")
    assert page.locator("a[href='/assets/warehouse.customers/columns/email_upper']").is_visible()
    shot(page, "column")

    page.goto(base + "/requests/new")
    page.fill("input[name=title]", "Sales per hour")
    page.fill("textarea[name=purpose]", "staffing plan for the evening shift")
    page.fill("textarea[name=hypothesis]", "evenings need one more person")
    page.fill("textarea[name=data_needed]", "orders per store and hour, six months")
    page.fill("input[name=needed_by]", "2026-12-24")
    page.click("button:has-text('Send the request')")
    page.wait_for_url(f"{base}/requests/*")
    page.click("button:has-text('Start work')")
    page.fill("input[name=deliverable]", "recipe:store_sales")
    page.click("button:has-text('Deliver')")
    page.wait_for_selector("h1 .pill.s-r-delivered")
    page.goto(base + "/requests")
    assert "1 delivered" in page.locator("#lead-times").inner_text()
    assert "1 overdue" in page.locator("#lead-times").inner_text()
    shot(page, "requests")
    page.goto(base + "/usage")
    assert page.locator("#unused a[href='/assets/mart.old_report']").is_visible()
    assert page.locator("#teams td:text-is('crm')").count() == 1
    shot(page, "usage")
    assert not page.errors, page.errors
