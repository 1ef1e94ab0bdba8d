"""The state store: migrations and the fresh-store fast path give the same schema; upgrades keep history."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import kiban.store.store as store_module
from kiban.store import Store


def schema_of(url: str) -> dict[str, dict[str, str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {t: {c["name"]: str(c["type"]) for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def migrate(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_a_new_store_has_exactly_the_migrated_schema(tmp_path):
    fresh, migrated = f"sqlite:///{tmp_path}/fresh.db", f"sqlite:///{tmp_path}/migrated.db"
    Store(fresh).close()
    migrate(migrated, "head")
    assert schema_of(fresh) == schema_of(migrated)


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
