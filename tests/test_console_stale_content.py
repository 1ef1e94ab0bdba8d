"""A model's code changed since its build is decided by content, never by the files' modification times.

The console trusts no column of a model whose definitions (SQL, YAML, the macros it calls) differ from what the
run that built or confirmed its table planned it from. Modification times lie: ``cp -p``/``rsync -t``/a checkout
copies an older file with its old time, ``touch -d`` sets any time, another machine's clock differs. Here a
generator makes such edits — backdated, copied with their times, touched without a change, edited and restored —
to the model's SQL, its YAML and a macro it calls, and the console must mask whole exactly the models whose content
differs from what built them (and what is computed from them downstream), never show an e-mail, and tell a person
why a query over such a table fails or what its answer hides, through the Python API, the CLI and the web.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiban.catalog.console import QueryConsole, QueryFailed, QueryResult
from kiban.catalog.definitions import stale_definitions, stale_models
from kiban.catalog.usage import Actor
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.store import Store
from tests.helpers.console import bearer, run

SECRET = "@example.com"
MASK = "•••"
CONTACT = "models/warehouse/contact.sql"
CONTACT_YML = "models/warehouse/contact.yml"
MACRO = "macros/shout.sql"
LOUD = "models/warehouse/loud.sql"

# what each definition file held when the tables were built, and another content for it. contact.sql was built
# reading e-mails; its other content reads names: a console trusting that lineage would show the e-mails built.
BUILT = {
    CONTACT: "select id, email as note from lake.customers\n",
    CONTACT_YML: "description: how to reach a customer\n",
    MACRO: "create macro shout(x) as upper(x);\n",
    LOUD: "select id, shout(name) as loud from lake.customers\n",
}
OTHER = {
    CONTACT: "select id, name as note from lake.customers\n",
    CONTACT_YML: "description: a customer's name, for letters\n",
    MACRO: "create macro shout(x) as lower(x);\n",
    LOUD: "select id, shout(name) as loud from lake.customers where id > 0\n",
}
OWNER = {CONTACT: "warehouse.contact", CONTACT_YML: "warehouse.contact", MACRO: "warehouse.loud",
         LOUD: "warehouse.loud"}
BROKEN = "mart.daily_sales"  # the template's mart whose build fails


@pytest.fixture
def shop(catalog_template, tmp_path):
    """The catalog's shop plus warehouse.contact (built from e-mails), its copy downstream, and warehouse.loud,
    which calls a project macro; everything built. Returns the root, the API tokens and when the build started."""
    root = tmp_path / "shop"
    shutil.copytree(catalog_template[0], root)
    for name, text in BUILT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "models" / "warehouse" / "contact_copy.sql").write_text("select id, note from warehouse.contact\n")
    started = time.time()
    assert run(root).failed == ["mart.daily_sales"]  # the template's broken mart; the rest is built
    return root, catalog_template[1], started


def console(root: Path) -> tuple[QueryConsole, Store]:
    project = load_project(root)
    store = Store(project.state_url)
    return QueryConsole(project, store), store


def ask(root: Path, sql: str, cleared: bool = False) -> QueryResult:
    con, store = console(root)
    try:
        return con.run(sql, Actor("mallory", pii_clearance=cleared))
    finally:
        store.close()


def stale(root: Path) -> dict[str, tuple[str, ...]]:
    project = load_project(root)
    store = Store(project.state_url)
    try:
        found = stale_definitions(project, build_graph(project), store)
        assert set(found) == stale_models(project, build_graph(project), store)
        assert found.pop(BROKEN) == ()  # never built: nothing a run confirmed was ever published from it
        return found
    finally:
        store.close()


# -- the generator: what people and tools do to files --------------------------------------------------------------

@dataclass(frozen=True)
class Edit:
    kind: str
    path: str

    @property
    def changes_content(self) -> bool:
        return self.kind in ("backdated", "copied_with_time", "future_clock")


KINDS = ("untouched", "touched_past", "touched_future", "restored", "backdated", "copied_with_time", "future_clock")


def apply(root: Path, edit: Edit, built_at: float, spare: Path) -> None:
    """Do ``edit`` to its file: built_at is when the run that built the tables started."""
    path = root / edit.path
    past, future = built_at - 3600, built_at + 3600
    if edit.kind == "touched_past":  # touch -d: the same content, an older time
        os.utime(path, (past, past))
    elif edit.kind == "touched_future":  # touch: the same content, a newer time (or another machine's clock)
        os.utime(path, (future, future))
    elif edit.kind == "restored":  # edited, then put back as it was (newer time, same content)
        path.write_text(OTHER[edit.path], encoding="utf-8")
        path.write_text(BUILT[edit.path], encoding="utf-8")
    elif edit.kind == "backdated":  # edited, then its time set before the build (touch -d, a clock behind)
        path.write_text(OTHER[edit.path], encoding="utf-8")
        os.utime(path, (past, past))
    elif edit.kind == "copied_with_time":  # cp -p / rsync -t / a checkout of an older version of the file
        source = spare / edit.path.replace("/", "_")
        source.write_text(OTHER[edit.path], encoding="utf-8")
        os.utime(source, (past - 3600, past - 3600))
        shutil.copy2(source, path)
    elif edit.kind == "future_clock":  # edited on a machine whose clock is ahead: newer, like any edit
        path.write_text(OTHER[edit.path], encoding="utf-8")
        os.utime(path, (future, future))


def put_back(root: Path, built_at: float) -> None:
    """Every definition file as built, dated before the build (the content is what counts)."""
    for name, text in BUILT.items():
        (root / name).write_text(text, encoding="utf-8")
        os.utime(root / name, (built_at - 60, built_at - 60))


def expected(edits: list[Edit]) -> set[str]:
    return {OWNER[e.path] for e in edits if e.changes_content}


def assert_masks(root: Path, changed: set[str]) -> None:
    """Exactly the changed models are masked whole (every value of every column) and say so, their copy
    downstream is masked where it comes from them, the others carry no note and show their plain columns, and no
    e-mail is shown anywhere."""
    found = stale(root)
    assert set(found) == changed
    for model in changed:  # the changed file is named (content compared part by part)
        assert found[model], model
    for relation in ("warehouse.contact", "warehouse.contact_copy", "warehouse.loud", "warehouse.customers",
                     "lake.customers"):
        got = ask(root, f"select * from {relation} order by 1 limit 5")
        assert SECRET not in repr(got.rows), relation
        assert SECRET not in repr(got.notes), relation
        if relation in changed:
            assert {v for row in got.rows for v in row} == {MASK}, relation
            assert any(relation in n and "masked whole" in n for n in got.notes), (relation, got.notes)
        elif relation == "warehouse.contact_copy" and "warehouse.contact" in changed:
            assert {row[1] for row in got.rows} == {MASK}
            assert any("warehouse.contact" in n for n in got.notes), got.notes
        else:
            assert not got.notes, (relation, got.notes)
    # not over-masked: a model whose content is as built shows its plain columns (warehouse.loud's lineage goes
    # through a macro, which lineage cannot see into: masked below PII whatever its code, so it tells nothing here)
    plain = ask(root, "select id, note from warehouse.contact order by id limit 1").rows
    if "warehouse.contact" in changed:
        assert plain == [(MASK, MASK)]
    else:  # built from e-mails, and its code says so: the e-mails are PII, the ids are plain
        assert plain == [(1, MASK)]


@pytest.mark.parametrize("seed", range(3))
def test_masked_whole_exactly_when_the_content_differs_whatever_the_times_say(shop, tmp_path, seed):
    root, _tokens, built_at = shop
    spare = tmp_path / "spare"
    spare.mkdir()
    rng = random.Random(seed)
    rounds: list[list[Edit]] = [
        [Edit(rng.choice(KINDS), path) for path in BUILT] for _ in range(3)]
    # every kind reaches every file across the seeds; a round where nothing changed in content is kept too
    rounds.append([Edit(KINDS[(seed * 3 + i) % len(KINDS)], path) for i, path in enumerate(BUILT)])
    for edits in rounds:
        put_back(root, built_at)
        assert not stale(root)
        for edit in edits:
            apply(root, edit, built_at, spare)
        assert_masks(root, expected(edits))


def test_a_backdated_edit_of_each_file_is_seen_and_a_rebuild_clears_it(shop, tmp_path):
    root, _tokens, built_at = shop
    for path in BUILT:
        put_back(root, built_at)
        apply(root, Edit("backdated", path), built_at, tmp_path)
        assert stale(root) == {OWNER[path]: (path,)}, path  # the very file is named
    # a run that builds the changed model from the code on disk trusts its columns again (its copy too)
    assert run(root, select=["warehouse.loud"]).ok
    put_back(root, built_at)
    assert stale(root) == {"warehouse.loud": (LOUD,)}  # built from its last edit: the file differs again
    assert run(root, select=["warehouse.loud"]).ok
    assert not stale(root)
    apply(root, Edit("copied_with_time", CONTACT), built_at, tmp_path)
    assert set(stale(root)) == {"warehouse.contact"}
    assert run(root, select=["warehouse.contact", "warehouse.contact_copy"]).ok
    assert not stale(root)
    # names now, and the code says names: plain (no PII in it), here and downstream
    assert ask(root, "select note from warehouse.contact_copy order by id limit 1").rows == [("name1",)]


def test_a_confirmation_without_a_rebuild_records_the_new_content(shop):
    """A comment added to a model's SQL changes its content, not its build: the next run finds it fresh (nothing
    rebuilt) and records that fresh table as made from the new content, so its columns are trusted again."""
    root, _tokens, built_at = shop
    (root / LOUD).write_text("-- shouted names\n" + BUILT[LOUD], encoding="utf-8")
    os.utime(root / LOUD, (built_at - 60, built_at - 60))
    assert set(stale(root)) == {"warehouse.loud"}
    result = run(root, select=["warehouse.loud"])
    assert result.ok
    assert "warehouse.loud" in result.plan.fresh
    assert not stale(root)


def test_a_table_built_before_contents_were_recorded_is_judged_by_time(shop):
    """An older store has no record of what built a table: the old rule (a file newer than the build) holds."""
    root, _tokens, built_at = shop
    project = load_project(root)
    path = project.state_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("delete from fingerprint_code")
    os.utime(root / CONTACT, (built_at - 60, built_at - 60))
    assert not stale(root)
    time.sleep(0.01)
    (root / MACRO).write_text(BUILT[MACRO], encoding="utf-8")  # the same content, a new time: stale by time
    assert stale(root) == {"warehouse.loud": (MACRO,)}


def test_a_person_with_clearance_is_shown_the_values_and_no_note(shop, tmp_path):
    root, _tokens, built_at = shop
    apply(root, Edit("backdated", CONTACT), built_at, tmp_path)
    got = ask(root, "select note from warehouse.contact order by id limit 1", cleared=True)
    assert got.rows == [("user1@example.com",)]
    assert got.notes == ()


# -- telling why: a failed query over a table masked whole, and the note on an answer -------------------------------

FAILING = "select * from warehouse.contact where id > 3"


def assert_explained(text: str) -> None:
    assert "warehouse.contact is masked whole" in text
    assert "its code changed since it was built" in text
    assert CONTACT in text  # the changed file
    assert "kiban run +warehouse.contact" in text  # the fix
    assert SECRET not in text
    assert "user1" not in text
    assert "Traceback" not in text


def test_a_query_that_fails_over_a_table_masked_whole_says_why(shop, tmp_path):
    root, _tokens, built_at = shop
    apply(root, Edit("backdated", CONTACT), built_at, tmp_path)
    con, store = console(root)
    try:
        with pytest.raises(QueryFailed) as failed:
            con.run(FAILING, Actor("mallory"))
        assert_explained(str(failed.value))
        assert failed.value.hint is not None
        assert "kiban run +warehouse.contact" in failed.value.hint
        # its answer over the same table, when it runs, carries the same note
        answer = con.run("select note from warehouse.contact_copy", Actor("mallory"))
        assert answer.notes
        assert "warehouse.contact" in answer.notes[0]
        assert CONTACT in answer.notes[0]
        assert "kiban run +warehouse.contact_copy" in answer.notes[0]
        # the history keeps the explanation (no values), not the engine's words alone
        from kiban.catalog.usage import history

        failed_entry = next(r for r in history(store, load_project(root).name, "mallory") if r.status == "failed")
        assert failed_entry.error is not None
        assert "masked whole" in failed_entry.error
    finally:
        store.close()
    # a failure over tables with nothing masked for a code change is told as before
    with pytest.raises(QueryFailed) as plain:
        ask(root, "select * from warehouse.loud where loud > 3")
    assert "masked whole" not in str(plain.value)


def test_the_cli_says_why_and_notes_what_is_masked(shop, cli, tmp_path):
    root, _tokens, built_at = shop
    apply(root, Edit("backdated", CONTACT), built_at, tmp_path)
    out: Any = cli("--project", root, "query", FAILING, "--user", "mallory")
    assert out.returncode != 0
    assert_explained(out.stderr)
    assert SECRET not in out.stdout
    out = cli("--project", root, "query", "select note from warehouse.contact order by id limit 2", "--user",
              "mallory")
    assert out.returncode == 0, out.stderr
    assert MASK in out.stdout
    assert SECRET not in out.stdout + out.stderr
    assert "note:" in out.stderr
    assert "warehouse.contact is masked whole" in out.stderr


def test_the_web_says_why_and_notes_what_is_masked(shop, tmp_path):
    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root, tokens, built_at = shop
    apply(root, Edit("backdated", CONTACT), built_at, tmp_path)
    head = bearer(tokens["analyst"])
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        wrong = client.post("/api/v1/query", json={"sql": FAILING}, headers=head)
        assert wrong.status_code == 400, wrong.text
        assert_explained(wrong.text)
        answer = client.post("/api/v1/query", json={"sql": "select note from warehouse.contact"}, headers=head)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert SECRET not in answer.text
        assert body["notes"]
        assert "warehouse.contact is masked whole" in body["notes"][0]
        # the console page shows the note above the result
        page = client.post("/console", data={"sql": "select note from warehouse.contact"}, headers=head)
        assert "stale-note" in page.text
        assert "warehouse.contact is masked whole" in page.text
        assert SECRET not in page.text
