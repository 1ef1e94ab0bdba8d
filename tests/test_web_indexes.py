"""The console's index pages over a real project and store: the asset catalog (filters, sorting), collected tables
and their loads (schema drift, quarantine, a rows chart that tells "nothing new" from "empty"), jobs and their
next ticks, the checks overview with its trends, the model registry, and users and tokens (admins only)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.console import served_copy, sign_in


@pytest.fixture
def client(indexes_template: Path, tmp_path: Path) -> Iterator[Any]:
    with served_copy(indexes_template, tmp_path) as c:
        yield c


def _rows(html: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', html)


def test_the_catalog_lists_every_asset_and_filters_and_sorts_them(client):
    sign_in(client, "viewer")
    page = client.get("/catalog")
    assert page.status_code == 200
    assert 'aria-current="page"' in page.text.split('href="/catalog"')[1][:30]
    every = _rows(page.text, "data-asset")
    assert {"lake.orders", "warehouse.orders", "mart.daily_sales"} <= set(every)
    assert every == sorted(every)
    assert '<td class="num">200</td>' in page.text  # rows, right-aligned and formatted
    assert _rows(client.get("/catalog?layer=mart").text, "data-asset") == ["mart.daily_sales"]
    assert _rows(client.get("/catalog?owner=stores@shop.example").text, "data-asset") == ["mart.daily_sales"]
    assert _rows(client.get("/catalog?tag=pos").text, "data-asset") == ["warehouse.orders"]
    assert _rows(client.get("/catalog?tag=finance&status=success").text, "data-asset") == [
        "mart.daily_sales", "warehouse.orders"]
    assert _rows(client.get("/catalog?layer=lake&status=lake").text, "data-asset") == [
        "lake.erp_orders", "lake.erp_products", "lake.orders"]
    assert _rows(client.get("/catalog?q=morning meeting").text, "data-asset") == ["mart.daily_sales"]
    assert "no asset matches" in client.get("/catalog?status=failed").text
    by_rows = _rows(client.get("/catalog?sort=-rows").text, "data-asset")
    assert by_rows[:2] == ["warehouse.orders", "mart.daily_sales"]  # 200 then 15; never-built ones last
    assert _rows(client.get("/catalog?sort=rows").text, "data-asset")[:2] == ["mart.daily_sales", "warehouse.orders"]
    assert _rows(client.get("/catalog?sort=name").text, "data-asset") == every
    assert _rows(client.get("/catalog?sort=-name").text, "data-asset") == every[::-1]
    header = client.get("/catalog?layer=warehouse&sort=rows").text
    assert 'href="/catalog?layer=warehouse&amp;sort=-rows"' in header  # sorting again turns it round, filters kept
    assert client.get("/catalog?sort=nonsense").status_code == 404


def test_loads_show_drift_quarantine_and_tell_nothing_new_from_empty(client):
    sign_in(client, "viewer")
    listing = client.get("/loads")
    assert listing.status_code == 200
    assert _rows(listing.text, "data-table") == ["lake.erp_orders", "lake.erp_products"]
    products = client.get("/loads/lake.erp_products").text
    kinds = dict(re.findall(r'data-load="(L\d+)" data-kind="([^"]+)"', products))
    assert kinds == {"L003": "empty", "L002": "new rows", "L001": "new rows"}  # a full read of an empty source
    assert "new column colour (VARCHAR)" in products
    assert "Schema drift" in products
    assert '<td class="num">1,999</td>' in products
    assert "<svg" in products
    assert "times in Asia/Tokyo" in products
    assert "UTC)" in products
    orders = client.get("/loads/erp_orders").text  # the short name works too
    kinds = dict(re.findall(r'data-load="(L\d+)" data-kind="([^"]+)"', orders))
    assert kinds == {"L006": "refused", "L005": "nothing new", "L004": "new rows"}  # no drop to "data loss"
    assert "Quarantined rows" in orders
    assert "erp/orders/q.parquet" in orders
    assert "kiban quarantine replay" in orders
    assert "too many quarantined rows" in orders
    assert 'class="load k-nothing-new"' in orders
    assert 'class="load k-empty"' not in orders
    assert client.get("/loads/lake.nope").status_code == 404
    asset = client.get("/assets/lake.erp_products").text
    assert 'href="/loads/lake.erp_products"' in asset  # found from the asset page, whose rows chart is per load
    assert 'class="load k-empty"' in asset.split('id="rows-chart"')[1].split("</figure>")[0]
    assert 'href="/loads/lake.erp_orders"' in client.get("/catalog?layer=lake").text


def test_jobs_show_their_next_ticks_in_the_project_time_zone(client):
    sign_in(client, "viewer")
    page = client.get("/schedule")
    assert page.status_code == 200
    assert _rows(page.text, "data-job") == ["nightly", "partners"]
    nightly = page.text.split('data-job="nightly"')[1].split("</tr>")[0]
    shown = r'<time datetime="[^"]+" title="[^"]+ UTC">\w{3}, \w{3} \d{1,2}, (\d{1,2}:\d\d\u202f[AP]M)</time>'
    ticks = re.findall(shown, nightly)
    assert ticks == ["2:30\u202fAM"] * 3  # three next ticks, in JST (the reader's locale: Mon, Dec 7, 2:30 AM)
    assert '<span class="cron" title="cron: 30 2 * * *">every day at 02:30</span>' in nightly  # words, cron on hover
    partners = page.text.split('data-job="partners"')[1].split("</tr>")[0]
    assert "when " in partners
    assert "landing/partners" in partners
    assert "never" in partners


def test_checks_overview_shows_each_checks_trend(client):
    sign_in(client, "viewer")
    page = client.get("/checks")
    assert page.status_code == 200
    checks = _rows(page.text, "data-check")
    assert {c.split(":")[0] for c in checks} == {"warehouse.orders"}
    assert len(checks) == 2
    unique = page.text.split('data-check="warehouse.orders:unique')[1].split("</tr>")[0]
    ticks = re.findall(r'class="tick t-(pass|fail)"', unique)
    assert ticks == ["pass", "fail", "pass"]
    assert "2 / 3" in unique  # oldest left: passed, failed, passed again
    # each run's time on hover: in the project's zone, named, and in UTC
    assert re.search(r"\(Asia/Tokyo; \d{4}-\d\d-\d\d \d\d:\d\d UTC\): fail", unique)
    assert "no check is failing" in client.get("/checks?failing=1").text


def test_models_list_versions_with_status_and_metric(client):
    sign_in(client, "viewer")
    page = client.get("/models")
    assert page.status_code == 200
    section = page.text.split('data-model="warehouse.demand_model"')[1]
    assert "v1 in use" in section
    assert "rejected" in section
    assert "lower is better" in section
    assert '<td class="num">12.5' in section


def test_users_and_tokens_are_for_admins_and_never_show_a_token(client):
    sign_in(client, "operator")
    assert client.get("/users").status_code == 403
    assert 'href="/users"' not in client.get("/catalog").text
    sign_in(client, "admin")
    page = client.get("/users")
    assert page.status_code == 200
    assert _rows(page.text, "data-user") == ["admin", "analyst", "operator", "viewer"]
    assert page.text.count("<td>tests</td>") == 4
    assert "kbn_" not in page.text
    hashes = client.app.state.accounts.store.engine.connect().exec_driver_sql(
        "select token_hash from api_tokens").scalars().all()
    assert hashes
    assert not any(h in page.text for h in hashes)


def test_a_big_catalog_comes_in_pages_that_keep_the_filters_and_the_order(client, monkeypatch):
    from kiban.web import indexes

    monkeypatch.setattr(indexes, "CATALOG_PAGE", 2)
    sign_in(client, "viewer")
    first = client.get("/catalog?sort=-name")
    assert _rows(first.text, "data-asset") == ["warehouse.orders", "mart.daily_sales"]
    assert "1–2 of 5" in first.text
    assert 'rel="prev"' not in first.text
    assert 'href="/catalog?sort=-name&amp;page=2" rel="next"' in first.text
    last = client.get("/catalog?sort=-name&page=3")
    assert _rows(last.text, "data-asset") == ["lake.erp_orders"]
    assert 'rel="next"' not in last.text
    assert _rows(client.get("/catalog?sort=-name&page=99").text, "data-asset") == ["lake.erp_orders"]
    lake = client.get("/catalog?layer=lake&page=2").text
    assert "3 of 5 assets" in lake
    assert _rows(lake, "data-asset") == ["lake.orders"]
    assert 'href="/catalog?layer=lake&amp;sort=name&amp;page=1" rel="prev"' in lake


def test_common_crons_read_as_words_and_others_stay_crons():
    from kiban.web.indexes import describe_cron

    assert describe_cron("0 6 * * 1-5") == "on weekdays at 06:00"
    assert describe_cron("5 23 * * 0") == "on Sundays at 23:05"
    assert describe_cron("*/15 * * * *") == "every 15 minutes"
    assert describe_cron("7 * * * *") == "every hour at :07"
    for other in ("0 6 1 * *", "0 6,18 * * *", "0 6 * * 1-3", None, "", "0 6 * *"):
        assert describe_cron(other) is None, other
