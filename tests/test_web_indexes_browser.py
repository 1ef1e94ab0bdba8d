"""The index pages in a real browser (Debian's chromium, Playwright): each loads, signed in as an admin, at
1440 px and at 390 px, with nothing wider than the screen (wide tables scroll inside their frame), numbers
right-aligned, and no script error. One server and one browser for the module (CI time)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import CHROMIUM, IMAGES, need_chromium
from tests.helpers.console import PASSWORD
from tests.helpers.live import serving

PAGES = {  # page → what it must show
    "/catalog?sort=-rows": "table.catalog tr[data-asset]",
    "/loads": "table.loads tr[data-table]",
    "/loads/lake.erp_orders": "svg .load.k-nothing-new",
    "/schedule": "table.jobs tr[data-job] td.next time",
    "/checks": "table.checks td.trend .tick.t-fail",
    "/models": "section.model table.versions",
    "/users": "table.tokens tbody tr",
}
SHOTS = {"/catalog?sort=-rows": "catalog", "/loads/lake.erp_orders": "loads", "/checks": "checks"}  # docs/web.md


@pytest.fixture(scope="module")
def site(indexes_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_chromium()
    root = tmp_path_factory.mktemp("indexes-browser") / "shop"
    shutil.copytree(indexes_template, root)
    with serving(root) as (base, _app):
        yield base


@pytest.fixture(scope="module")
def signed_in(site: str) -> Iterator[Any]:
    """A browser context signed in as the admin (every page is open to it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(site + "/login")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(site + "/")
            page.close()
            yield context
        finally:
            browser.close()


@pytest.mark.parametrize("path", list(PAGES))
def test_each_index_page_fits_1440_and_390_px(site, signed_in, path):
    page = signed_in.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        for width, height in ((1440, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            answer = page.goto(site + path)
            assert answer is not None, path
            assert answer.status == 200, path
            assert page.locator(PAGES[path]).count() > 0, (path, PAGES[path])
            assert page.locator("nav a[aria-current=page]").count() == 1  # where am I
            wide = page.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= width, f"{path} is {wide} px wide at {width} px"
            aligned = page.evaluate("() => [...document.querySelectorAll('td.num')]"
                                    ".every(td => getComputedStyle(td).textAlign === 'right')")
            assert aligned, path
            if width == 1440 and path in SHOTS:
                IMAGES.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(IMAGES / f"web-{SHOTS[path]}.png"), full_page=False)
        assert not errors, errors
    finally:
        page.close()


NAV = ["/", "/runs", "/incidents", "/graph", "/catalog", "/loads", "/schedule", "/checks", "/models", "/recipes",
       "/console", "/requests", "/forms", "/usage", "/initiatives", "/team", "/users", "/audit"]


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_page_of_the_nav_fits_390_px_in_both_languages(site, signed_in, lang):
    """Each page the nav links to, and the first page of each kind it links to (an asset, a run, a use case, a
    table's loads…), is no wider than a 390 px phone, in English and in Japanese."""
    page = signed_in.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(f"{site}/lang/{lang}?next=/")
        assert page.locator("html").get_attribute("lang") == lang
        links = page.evaluate("() => [...document.querySelectorAll('header nav a')].map(a => a.getAttribute('href'))")
        assert set(NAV) <= set(links), links
        seen: set[str] = set()
        wide: dict[str, int] = {}
        for path in links:
            page.goto(site + path)
            width = page.evaluate("() => document.documentElement.scrollWidth")
            if width > 390:
                wide[path] = width
            for href in page.evaluate("() => [...document.querySelectorAll('main a[href^=\"/\"]')]"
                                      ".map(a => a.getAttribute('href'))"):
                kind = "/".join(href.split("?")[0].split("/")[:2])
                if href.count("/") < 2 or kind in seen or href.startswith(("/lang/", "/api/", "/static/")):
                    continue
                seen.add(kind)
                answer = page.goto(site + href)
                assert answer is not None, href
                assert answer.status == 200, href
                width = page.evaluate("() => document.documentElement.scrollWidth")
                if width > 390:
                    wide[href] = width
        assert wide == {}, f"wider than 390 px in {lang}: {wide}"
        assert not errors, errors
    finally:
        page.goto(f"{site}/lang/en?next=/")
        page.close()
