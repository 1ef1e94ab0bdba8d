"""Debian's chromium driven by Playwright against a real uvicorn server (shared by the browser tests)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable
from tests.helpers.console import PASSWORD
from tests.helpers.live import serving

CHROMIUM = "/usr/bin/chromium"
# screenshots for docs/web.md: written to docs/images/ when KIBAN_SCREENSHOTS=1, else to a scratch folder
IMAGES = (Path(__file__).resolve().parents[2] / "docs" / "images" if os.environ.get("KIBAN_SCREENSHOTS") == "1"
          else Path(tempfile.gettempdir()) / "kiban-screenshots")


def need_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    unavailable(f"chromium is not installed at {CHROMIUM} (apt-get install chromium; `make test` does it as root)")


@pytest.fixture
def server(console_template: tuple[Path, dict[str, str], int], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, project root) of the console's shop (tests.helpers.console) in a real uvicorn server on a free
    loopback port."""
    need_chromium()
    root = tmp_path / "shop"
    shutil.copytree(console_template[0], root)
    with serving(root) as (base, _app):
        yield base, root


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium launched by Playwright (skipped, or failed under KIBAN_REQUIRE_SERVICES=1, without it)."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def browser_sign_in(browser: Any, base: str, name: str) -> Any:
    """A new page signed in as ``name`` through the form; its console errors collect in ``page.errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")  # not signed in: sent to the sign-in page
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    return page


def shot(page: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"web-{name}.png"), full_page=False)
