"""`kiban loads TABLE` lists a table's loads (text and JSON); `kiban loads retract LOAD_ID` takes a load out of
every view — kept in the lake, marked retracted — the next run rebuilds what depends on it, and the files it
read can be collected again (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.helpers.loads import MODEL, SOURCE, mart


def test_list_retract_rebuild_and_collect_again(make_project: Any, cli: Callable[..., Any]) -> None:
    root = make_project({"sources/seed.yml": SOURCE, **MODEL, "data/a.csv": "k,v\n1,10\n2,20\n3,30\n"})
    assert cli("--project", root, "run").returncode == 0
    (root / "data/b.csv").write_text("k,v\n4,40\n5,50\n")
    assert cli("--project", root, "run").returncode == 0
    assert mart(root) == (5, 150)
    listed = cli("--project", root, "loads", "seed_items", "--json")
    assert listed.returncode == 0, listed.stderr
    loads = json.loads(listed.stdout)
    assert [(x["landed"], x["retracted"]) for x in loads] == [(2, False), (3, False)]  # newest first
    text = cli("--project", root, "loads", "lake.seed_items")
    assert loads[1]["load_id"] in text.stdout
    assert "committed" in text.stdout
    first = loads[1]["load_id"]
    retracted = cli("--project", root, "loads", "retract", first, "--note", "wrong file", "--json")
    assert retracted.returncode == 0, retracted.stderr
    assert json.loads(retracted.stdout)["retracted_note"] == "wrong file"
    assert (root / "lake" / loads[1]["files"][0]["path"]).exists()  # kept in the lake
    again = cli("--project", root, "loads", "retract", first)
    assert again.returncode != 0
    assert "retracted already" in again.stderr + again.stdout
    (root / "data/a.csv").unlink()  # the run after the retraction: no view reads the load any more
    assert cli("--project", root, "run").returncode == 0
    assert mart(root) == (2, 90)
    (root / "data/a.csv").write_text("k,v\n1,10\n2,20\n3,30\n")  # put back: collected again, once
    assert cli("--project", root, "run").returncode == 0
    assert mart(root) == (5, 150)
    assert cli("--project", root, "run").returncode == 0
    assert mart(root) == (5, 150)
    statuses = [x["retracted"] for x in json.loads(cli("--project", root, "loads", "--json").stdout)]
    assert statuses.count(True) == 1


def test_retract_names_what_is_wrong(make_project: Any, cli: Callable[..., Any]) -> None:
    root = make_project({"sources/seed.yml": SOURCE, "data/a.csv": "k,v\n1,10\n"})
    done = cli("--project", root, "loads", "retract", "nope")
    assert done.returncode != 0
    assert "no load nope" in done.stderr + done.stdout
    done = cli("--project", root, "loads", "retract")
    assert done.returncode != 0
    assert "usage: kiban loads retract LOAD_ID" in done.stderr + done.stdout
