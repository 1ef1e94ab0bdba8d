"""The state store: migrations and the fresh-store fast path give the same schema; upgrades keep history."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kiban.store import Store, lite
from tests.helpers.migrations import keys_of, migrate, schema_of


def test_a_new_store_has_exactly_the_migrated_schema(tmp_path):
    fresh, migrated = f"sqlite:///{tmp_path}/fresh.db", f"sqlite:///{tmp_path}/migrated.db"
    Store(fresh).close()
    migrate(migrated, "head")
    assert schema_of(fresh) == schema_of(migrated)
    assert keys_of(fresh) == keys_of(migrated)  # the same keys too: a key decides what a write replaces


def test_an_old_store_is_upgraded_and_keeps_its_history(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    migrate(url, "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("insert into runs (run_id, project, status, selection, options, started_at) "
                             "values ('r1', 'p', 'success', '[]', '{}', '2026-11-01 00:00:00')"))
    engine.dispose()
    store = Store(url)
    try:
        assert store.run("r1").status == "success"
        assert "watermark" in schema_of(url)["attempts"]
        assert "incidents" in schema_of(url)
    finally:
        store.close()


def test_migrations_run_on_postgresql(postgres_url):
    migrate(postgres_url.replace("postgresql://", "postgresql+psycopg://"), "head")
    store = Store(postgres_url)
    try:
        store.start_run("r1", "p", ["x"], {})
        store.finish_run("r1", "success")
        assert store.last_run("p").selection == ["x"]
    finally:
        store.close()
    assert "slo_evaluations" in schema_of(postgres_url.replace("postgresql://", "postgresql+psycopg://"))


@pytest.mark.parametrize("way", ["lite", "sqlalchemy"])
def test_an_assets_history_is_its_own_projects(tmp_path, monkeypatch, way):
    """Two projects sharing a store may both have ``warehouse.orders``: the asset page and `kiban show` list the
    builds of the project asked about, never the other's (whose durations would also skew the usual build time)."""
    if way == "sqlalchemy":
        monkeypatch.setattr(lite, "open_store", lambda path, head: None)
    store = Store(f"sqlite:///{tmp_path}/state.db")
    assert (store.lite is not None) == (way == "lite")
    try:
        for n, project in enumerate(("alpha", "beta", "alpha")):
            store.start_run(f"r{n}", project, ["warehouse.orders"], {})
            store.record_attempt(f"r{n}", "warehouse.orders", "success", rows=1 if project == "alpha" else 9)
            store.finish_run(f"r{n}", "success")
        assert [a.rows for a in store.asset_history("alpha", "warehouse.orders")] == [1, 1]
        assert [a.rows for a in store.asset_history("beta", "warehouse.orders")] == [9]
        assert store.asset_history("gamma", "warehouse.orders") == []
    finally:
        store.close()
