"""``HEAD_REVISION`` in store/store.py is the head of the Alembic scripts that ship: a new store is stamped with it,
so a mismatch would stamp a new store as older (its next open re-runs migrations on tables that exist) or newer
than its scripts. Read from the scripts as they are, so it holds for whatever chain of migrations results."""

from __future__ import annotations

import itertools
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

import kiban.store.store as store_module
from kiban.store import Store

MIGRATIONS = Path(store_module.__file__).parent / "migrations"


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def test_head_revision_is_alembics_single_head() -> None:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"the migrations branch: heads {heads} (chain each down_revision to the one before)"
    assert heads == [store_module.HEAD_REVISION]


def test_the_chain_is_linear_from_the_first_migration_to_the_head() -> None:
    scripts = _scripts()
    chain = list(scripts.walk_revisions())  # head first
    assert chain[0].revision == store_module.HEAD_REVISION
    assert chain[-1].down_revision is None
    for newer, older in itertools.pairwise(chain):
        assert newer.down_revision == older.revision
    files = {p.stem.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py")}
    assert {s.revision for s in chain} == files  # every script is in the chain, none left dangling


def test_a_new_store_is_stamped_with_the_head(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with store.engine.connect() as conn:
            stamped = conn.exec_driver_sql("select version_num from alembic_version").scalar_one()
    finally:
        store.close()
    assert stamped == store_module.HEAD_REVISION
