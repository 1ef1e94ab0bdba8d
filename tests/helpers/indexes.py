"""The console's index pages' shop: the web shop after three runs, with a collected source and its loads, two jobs
and a registered model (shared by the index pages' tests)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files
from tests.helpers.console import add_users, build_project

SOURCES = ("type: sqlite\nurl: data/erp.db\ntables:\n"
           "  products:\n    mode: full\n    on_drift: warn\n"
           "  orders:\n    mode: incremental\n    cursor: id\n")
JOBS = ('jobs:\n  nightly:\n    select: ["+mart.daily_sales"]\n    cron: "30 2 * * *"\n'
        '  partners:\n    select: [warehouse.orders]\n    sensors:\n      - landing: landing/partners\n'
        '        pattern: "*.csv"\n')


def record_loads(root: Path) -> None:
    """Loads as `kiban collect` records them: products (full) got a new column then read an empty source;
    orders (incremental) landed rows, quarantined some, then found nothing new."""
    from kiban.collect.manifest import LoadRecord, Manifests, SchemaChange
    from kiban.project import load_project
    from kiban.status import LoadStatus
    from kiban.store import Store, utcnow

    project = load_project(root)
    store = Store(project.state_url)
    manifests = Manifests(store)
    start = utcnow() - timedelta(days=3)

    def load(n: int, table: str, **counts: Any) -> LoadRecord:
        return LoadRecord(load_id=f"L{n:03d}", project=project.name, asset=f"lake.erp_{table}", source="erp",
                          table=table, started_at=start + timedelta(hours=n), **counts)

    manifests.commit(load(1, "products", rows_read=1999, rows_landed=1999), [])
    manifests.commit(load(2, "products", rows_read=1999, rows_landed=1999,
                          drift=[(SchemaChange("added", "colour", None, "VARCHAR"), "warned")]), [])
    manifests.commit(load(3, "products"), [])  # the source was empty
    manifests.commit(load(4, "orders", rows_read=500, rows_landed=480, rows_quarantined=20, cursor=500,
                          files=[("erp/orders/q.parquet", "quarantine", 20, 900)]), [])
    manifests.commit(load(5, "orders", cursor=500), [])  # nothing new since
    manifests.commit(load(6, "orders", status=LoadStatus.FAILED, error="too many quarantined rows"), [])
    store.close()


def register_models(root: Path) -> None:
    from kiban.ml.registry import NewVersion, open_registry

    registry = open_registry(root)
    for mae in (12.5, 14.0):
        new = NewVersion(model={"w": mae}, metric="mae", direction="min", threshold=None, metrics={"mae": mae},
                         params={}, data_fingerprint="d", code_fingerprint="c", baseline={})
        version, _ = registry.register("warehouse.demand_model", new)
        registry.settle("warehouse.demand_model", version.version if version.status == "pending" else None)
    registry.store.close()


@pytest.fixture(scope="module")
def indexes_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The web shop after two runs (the second fixed), with a collected source, two jobs and a model."""
    from kiban.operate import run
    from kiban.project import load_project
    from kiban.run import RunOptions

    root = build_project(tmp_path_factory.mktemp("indexes") / "shop", broken=False)
    orders = root / "models/warehouse/orders.sql"
    for sql in ("select id, store, amount, day from lake.orders\n",
                "select id % 150 as id, store, amount, day from lake.orders\n",  # ids repeat: `unique` fails
                "select id, store, amount, day from lake.orders where true\n"):
        orders.write_text(sql)
        run(load_project(root), RunOptions())  # with the checks, as `kiban run`
    write_files(root, {"sources/erp.yml": SOURCES,
                       "kiban.yml": (root / "kiban.yml").read_text() + JOBS})
    add_users(root)
    record_loads(root)
    register_models(root)
    return root
