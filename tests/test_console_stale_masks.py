"""The mask plan describes the data as published, whatever the code on disk or in a long-running server says.

Masks come from column lineage, and lineage from a model's code. Two versions of that code can disagree with the
published data: the code on disk was edited after the table was built (a pull, an edit, a failed build), or a
server loaded the project before a run in another process published tables built from newer code and tags. Each
is an attack a person without clearance can simply wait for; here each must show masked values, and a run that
rebuilds the model brings its plain columns back.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from kiban.catalog.console import QueryConsole
from kiban.catalog.reading import shared_reader
from kiban.catalog.usage import Actor
from kiban.project import load_project
from kiban.store import Store
from tests.helpers.console import bearer, run

SECRET = "@example.com"


def edit(path: Path, text: str) -> None:
    """Write ``path`` now (after every run so far started: its modification time says so)."""
    time.sleep(0.01)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def shop(catalog_template, tmp_path):
    root = tmp_path / "shop"
    shutil.copytree(catalog_template[0], root)
    (root / "models" / "warehouse" / "contact.sql").write_text("select id, name as note from lake.customers\n")
    (root / "models" / "warehouse" / "contact_copy.sql").write_text("select id, note from warehouse.contact\n")
    assert run(root).failed == ["mart.daily_sales"]  # the template's broken mart; the rest is built
    return root, catalog_template[1]


def rows(root: Path, sql: str) -> list[tuple[object, ...]]:
    project = load_project(root)
    store = Store(project.state_url)
    try:
        return QueryConsole(project, store).run(sql, Actor("mallory")).rows
    finally:
        store.close()


def profiled(root: Path, assets: list[str]) -> str:
    from kiban.catalog.profile import load_profiles, profile_assets

    project = load_project(root)
    store = Store(project.state_url)
    try:
        profile_assets(project, store, assets)
        stored = load_profiles(store, project.name)
        return repr({k: [(p.min_value, p.max_value, p.examples) for p in v] for k, v in stored.items() if k in assets})
    finally:
        store.close()


def test_a_model_edited_after_its_build_is_masked_until_it_is_built_again(shop):
    root, _tokens = shop
    model = root / "models" / "warehouse" / "contact.sql"
    assert rows(root, "select note from warehouse.contact order by id limit 1") == [("name1",)]
    # built with e-mails, then edited to read names: the table still holds e-mails until the next run
    edit(model, "select id, email as note from lake.customers\n")
    assert run(root, select=["warehouse.contact"]).ok
    edit(model, "select id, name as note from lake.customers\n")
    for relation in ("warehouse.contact", "warehouse.contact_copy"):
        got = rows(root, f"select * from {relation} order by id limit 3")
        assert SECRET not in repr(got), relation
        assert {r[1] for r in got} == {"•••"}, relation
    # nor are its values profiled for the asset pages (min, max, examples), here or downstream
    assert SECRET not in profiled(root, ["warehouse.contact", "warehouse.contact_copy"])
    # a build that fails keeps the old table: still masked
    edit(model, "select id, no_such_column as note from lake.customers\n")
    assert run(root, select=["warehouse.contact"]).failed == ["warehouse.contact"]
    edit(model, "select id, name as note from lake.customers\n")
    assert SECRET not in repr(rows(root, "select note from warehouse.contact_copy order by id limit 3"))
    # built again from the code on disk: its plain columns are plain again
    assert run(root, select=["warehouse.contact", "warehouse.contact_copy"]).ok
    assert rows(root, "select note from warehouse.contact_copy order by id limit 1") == [("name1",)]


def test_a_server_follows_runs_and_tags_it_did_not_see(shop):
    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root, tokens = shop

    def query(client: TestClient, sql: str) -> list[list[object]]:
        answer = client.post("/api/v1/query", json={"sql": sql}, headers=bearer(tokens["analyst"]))
        assert answer.status_code == 200, answer.text
        found: list[list[object]] = answer.json()["rows"]
        return found

    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        assert query(client, "select note from warehouse.contact order by id limit 1") == [["name1"]]
        # another process edits the model and runs it: the server's project is older than the data now
        edit(root / "models" / "warehouse" / "contact.sql", "select id, email as note from lake.customers\n")
        assert run(root, select=["warehouse.contact", "warehouse.contact_copy"]).ok
        for relation in ("warehouse.contact", "warehouse.contact_copy"):
            assert SECRET not in repr(query(client, f"select note from {relation} order by id limit 3")), relation
        # a column tagged pii while the server runs is masked at once (no run needed: the tag is the promise)
        yml = root / "models" / "lake" / "customers.yml"
        edit(yml, yml.read_text() + "  - name: name\n    tags: [pii]\n")
        assert query(client, "select name from lake.customers order by id limit 1") == [["•••"]]


def test_bi_and_notebook_readers_follow_new_tags_too(shop):
    root, _tokens = shop
    reader = shared_reader(root, "bi")
    assert reader.arrow("select name from lake.customers order by id limit 1", Actor("mallory")).table.to_pylist() \
        == [{"name": "name1"}]
    yml = root / "models" / "lake" / "customers.yml"
    edit(yml, yml.read_text() + "  - name: name\n    tags: [pii]\n")
    reader = shared_reader(root, "bi")
    assert reader.arrow("select name from lake.customers order by id limit 1", Actor("mallory")).table.to_pylist() \
        == [{"name": "•••"}]
