"""A state store's schema as SQLAlchemy's inspector sees it, and Alembic's migrations run to a given revision
(the store tests compare a new store with a migrated one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import kiban.store.store as store_module


def schema_of(url: str) -> dict[str, dict[str, str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {t: {c["name"]: str(c["type"]) for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def keys_of(url: str) -> dict[str, tuple[Any, ...]]:
    """Each table's primary key columns (in order), and its indexes: (name, columns, unique)."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {t: (tuple(inspector.get_pk_constraint(t)["constrained_columns"]),
                    sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(t)))
                for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def migrate(url: str, revision: str, down: bool = False) -> None:
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()
