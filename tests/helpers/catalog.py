"""The web catalog's shop: the console's project plus customers with a PII e-mail, two recipes and profiles,
built once per module with one user per role (shared by the web catalog tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_files, write_parquet
from tests.helpers.console import add_users, build_project, run

CATALOG_FILES = {
    "models/lake/customers.yml": (
        "description: Customers as the web shop keeps them\ncolumns:\n"
        "  - name: email\n    description: where receipts go\n    tags: [pii]\n"),
    "models/warehouse/customers.sql": (
        "select id, name, email, md5(email) as email_key, upper(email) as email_upper from lake.customers\n"),
    "models/warehouse/customers.yml": (
        "description: One row per web shop customer\nowner: crm-team\ncolumns:\n"
        "  - name: email_key\n    description: md5 of the e-mail, for joins\n    tags: [anonymised]\n"),
    "models/mart/old_report.sql": "select store, count(*) as orders from warehouse.orders group by store\n",
    "recipes/store_sales.yml": (
        "description: One store's orders between two days\nowner: stores@shop.example\ntags: [stores]\n"
        "sql: |\n  select day, count(*) as orders, sum(amount) as revenue from warehouse.orders\n"
        "  where store = $store and day between $from_day and $to_day group by day order by day\n"
        "params:\n  store: {type: int, description: store number, values_from: warehouse.orders.store}\n"
        "  from_day: {type: date, default: 2026-11-01}\n  to_day: {type: date, default: 2026-11-30}\n"),
    "recipes/customer_mails.yml": (
        "description: Customers and where their receipts go\nsql: |\n"
        "  select id, email, email_key from warehouse.customers where id <= $upto order by id\n"
        "params:\n  upto: {type: int, default: 3}\n"),
}


def build_catalog_project(root: Path) -> Path:
    """The console tests' project (a failed mart) plus customers with a PII e-mail, two recipes, profiles."""
    build_project(root)
    write_files(root, CATALOG_FILES)
    write_parquet(root / "lake" / "customers" / "part-0.parquet",
                  "select i as id, 'name' || i as name, 'user' || i || '@example.com' as email from range(1, 11) t(i)")
    run(root)
    from kiban.catalog.profile import profile_assets
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(root)
    store = Store(project.state_url)
    try:
        profile_assets(project, store)
    finally:
        store.close()
    return root


@pytest.fixture(scope="module")
def catalog_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = build_catalog_project(tmp_path_factory.mktemp("catalog") / "shop")
    return root, add_users(root)
