"""`kiban collect`, `kiban quarantine` and the collection part of `kiban show`, through the real command line.

The child process registers the JSON-lines test connector (tests/collect_jsonl_connector.py) for the
`files` type before running kiban's own entry point.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

TESTS = Path(__file__).parent
ENTRY = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import kiban.collect.connector as c; "
         "c.CONNECTORS['files'] = 'collect_jsonl_connector'; from kiban.cli import main; "
         "sys.argv[0] = 'kiban'; main()")

SOURCE = """type: files
settle: 0s
description: the web shop's database export
tables:
  orders:
    path: data/orders.jsonl
    mode: incremental
    cursor: updated_at
    primary_key: [id]
    columns:
      - {name: id, type: INTEGER}
      - {name: amount, type: "DECIMAL(6,2)"}
"""


def kiban(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "220", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-c", ENTRY, str(TESTS), "--project", str(root), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def shop(make_project) -> Path:
    root = make_project({"sources/shop.yml": SOURCE,
                         "models/mart/revenue.sql": "select sum(amount) as revenue from lake.shop_orders_latest"})
    rows = [{"id": 1, "amount": "10.00", "updated_at": "2024-01-01T01:00:00"},
            {"id": 2, "amount": "12,50", "updated_at": "2024-01-01T02:00:00"},
            {"id": 3, "amount": "7.25", "updated_at": "2024-01-01T03:00:00"}]
    (root / "data").mkdir()
    (root / "data/orders.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def test_collect_prints_reconciled_counts_and_quarantine_can_be_listed_shown_exported_and_replayed(shop, tmp_path):
    done = kiban(shop, "collect")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("lake.shop_orders"))
    assert line.split()[:7] == ["lake.shop_orders", "success", "3", "2", "1", "0", "0"]
    assert "1 row(s) quarantined (1 × column amount)" in done.stderr
    assert not (shop / "kiban.duckdb").exists() or "mart" not in done.stdout  # collect builds no model

    listed = kiban(shop, "quarantine", "list")
    assert listed.returncode == 0
    assert "lake.shop_orders" in listed.stdout
    assert "1 × column amount" in listed.stdout
    shown = kiban(shop, "quarantine", "show", "shop_orders")
    assert "id=2" in shown.stdout
    assert "column amount: '12,50' is not a DECIMAL(6,2)" in shown.stdout
    out = tmp_path / "q.csv"
    exported = kiban(shop, "quarantine", "export", "lake.shop_orders", "--to", str(out))
    assert exported.returncode == 0, exported.stderr
    with out.open() as handle:
        written = list(csv.DictReader(handle))
    assert [(r["location"], r["column"]) for r in written] == [("id=2", "amount")]
    assert json.loads(written[0]["raw"])["amount"] == "12,50"

    shown = kiban(shop, "show", "lake.shop_orders")
    assert shown.returncode == 0, shown.stderr
    assert "recent loads" in shown.stdout
    assert "committed" in shown.stdout
    assert "quarantined rows: 1" in shown.stdout
    assert "sources/shop.yml" in shown.stdout

    (shop / "sources/shop.yml").write_text(SOURCE.replace("DECIMAL(6,2)", "VARCHAR"))  # the source's format won
    replayed = kiban(shop, "quarantine", "replay", "shop_orders")
    assert replayed.returncode == 0, replayed.stderr
    assert "1 row(s) cast again: 1 landed" in replayed.stdout
    assert "no quarantined rows" in kiban(shop, "quarantine", "list").stdout


def test_run_collects_then_builds_and_a_broken_source_fails_with_a_message(shop):
    done = kiban(shop, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mart.revenue" in done.stdout
    assert "lake.shop_orders" in done.stdout
    assert "lake.shop_orders: 1 of 3 row(s) quarantined" in done.stderr
    (shop / "sources/shop.yml").write_text(SOURCE.replace("data/orders.jsonl", "data/nowhere.jsonl"))
    broken = kiban(shop, "collect")
    assert broken.returncode == 1
    assert "source shop, table orders: path data/nowhere.jsonl does not exist" in broken.stderr
    assert "Traceback" not in broken.stderr
    events = [json.loads(x) for x in kiban(shop, "run", "--log-format", "json").stdout.splitlines()]
    finished = {e["asset"]: e for e in events if e["kind"] == "asset_finished"}
    assert finished["lake.shop_orders"]["status"] == "failed"
    assert finished["mart.revenue"]["status"] == "skipped"


def test_collect_rejects_a_selection_without_collected_tables(shop):
    done = kiban(shop, "collect", "mart.revenue")
    assert done.returncode == 2
    assert "the selection names no collected table" in done.stderr
    assert "lake.shop_orders" in done.stderr


def test_the_real_files_connector_lands_a_landing_folder_once(make_project, cli):
    """The `files` connector (kiban.collect.connectors.files) through the loader: typing, quarantine, once."""
    root = make_project({"sources/shop.yml": "type: files\nsettle: 0s\ntables:\n  orders:\n    path: landing/*.csv\n"
                                            "    primary_key: [id]\n    columns:\n"
                                            "      - {name: id, type: INTEGER}\n"
                                            "      - {name: amount, type: \"DECIMAL(8,2)\"}\n",
                         "models/mart/total.sql": "select sum(amount) as total from lake.shop_orders_latest"})
    (root / "landing").mkdir()
    (root / "landing/orders-1.csv").write_text("id,amount\n1,10.00\n2,12;50\n")
    first = cli("--project", root, "collect")
    line = next(x for x in first.stdout.splitlines() if x.strip().startswith("lake.shop_orders"))
    assert line.split()[:6] == ["lake.shop_orders", "success", "2", "1", "1", "0"], first.stderr
    (root / "landing/orders-2.csv").write_text("id,amount\n3,1.50\n")
    again = cli("--project", root, "run")  # collects (orders-2.csv only: orders-1.csv was landed) then builds
    assert again.returncode == 0, again.stdout + again.stderr
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    assert con.execute("select total::varchar from mart.total").fetchall() == [("11.50",)]
    assert con.execute("select count(*) from lake.shop_orders").fetchall() == [(2,)]
    con.close()
