"""SQLite sources: real files read with the standard library, typed from the declared column types."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kiban.collect.connector import ReadContext, SourceError, read_batches
from kiban.collect.spec import SourceSpec


def database(path: Path, *statements: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()
    return path


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    return database(
        tmp_path / "data/legacy.db",
        "create table members (id integer primary key, name text, fee decimal(8,2), active boolean, "
        "joined date, seen timestamp, ratio real, photo blob, anything)",
        "insert into members values (1, 'Aiko', 12.50, 1, '2024-01-02', '2024-01-02 10:00:00', 0.5, x'00ff', 1)",
        "insert into members values (2, null, '3.10', 0, '2024-01-03', '2024-01-03T01:00:00+09:00', 2, null, 'x')",
        "insert into members values (3, 'Ren', 'lots', 1, '2024-01-04', '2024-01-04 12:00:00', 1.5, null, null)",
        "insert into members values (4, 'Mei', 7, 1, 'soon', '2024-01-05 12:00:00', 1, null, null)",
    )


def read(path: Path | str, table: dict[str, Any], since: Any = None,
         batch_rows: int = 1000) -> tuple[list[pa.RecordBatch], ReadContext]:
    spec = SourceSpec.model_validate({"type": "sqlite", "url": str(path), "tables": {"members": table}})
    ctx = ReadContext("legacy", "members", spec, spec.tables["members"], Path("/"), url=str(path), since=since,
                      batch_rows=batch_rows)
    return list(read_batches(ctx)), ctx


def test_declared_types_are_kept_and_values_that_do_not_fit_are_quarantined(legacy: Path) -> None:
    found, ctx = read(legacy, {}, batch_rows=2)
    table = pa.Table.from_batches(found)
    assert table.schema.field("fee").type == pa.decimal128(8, 2)
    assert table.schema.field("active").type == pa.bool_()
    assert table.schema.field("joined").type == pa.date32()
    assert table.schema.field("seen").type == pa.timestamp("us")
    assert table.schema.field("photo").type == pa.binary()
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["fee"] == Decimal("12.50")
    assert rows[0]["photo"] == b"\x00\xff"
    assert rows[0]["active"] is True
    assert rows[1]["seen"] == dt.datetime(2024, 1, 2, 16)  # +09:00 → UTC
    assert rows[1]["fee"] == Decimal("3.10")
    assert rows[1]["name"] is None
    assert [r["anything"] for r in rows] == ["1", "x"]  # no declared type: the first batch's values say text
    assert [(b.location, b.column, b.reason) for b in ctx.bad_rows] == [
        ("members rowid=3", "fee", "column fee: 'lots' is not a decimal(8,2)"),
        ("members rowid=4", "joined", "column joined: 'soon' is not a date")]
    assert "'Ren'" in ctx.bad_rows[0].raw


def test_incremental_select_and_query(legacy: Path) -> None:
    table = {"select": ["id", "seen"], "mode": "incremental", "cursor": "id"}
    found, _ = read(legacy, table, since=2)
    assert pa.Table.from_batches(found).column_names == ["id", "seen"]
    assert [r["id"] for r in pa.Table.from_batches(found).to_pylist()] == [2, 3, 4]  # the edge is read again
    found, _ = read(legacy, {**table, "lookback": 1}, since=2)
    assert [r["id"] for r in pa.Table.from_batches(found).to_pylist()] == [2, 3, 4]
    found, _ = read(legacy, {"query": "select id, upper(name) as name from members where id > 1",
                             "mode": "incremental", "cursor": "id"}, since=2)
    assert pa.Table.from_batches(found).to_pylist() == [{"id": 2, "name": None}, {"id": 3, "name": "REN"},
                                                        {"id": 4, "name": "MEI"}]


def test_bad_configurations_give_clear_messages(legacy: Path, tmp_path: Path) -> None:
    def error(path: Path | str, table: dict[str, Any]) -> str:
        with pytest.raises(SourceError) as caught:
            read(path, table)
        return str(caught.value)

    assert "the SQLite file" in error(tmp_path / "nope.db", {})
    assert "does not exist" in error(tmp_path / "n.db", {})
    message = error(legacy, {"table": "member"})
    assert "table member does not exist" in message
    assert "did you mean 'members'" in message
    message = error(legacy, {"mode": "incremental", "cursor": "sen"})
    assert "cursor column sen (`cursor:`) is not a column of table members" in message
    assert "did you mean 'seen'" in message
    assert "reading the query failed" in error(legacy, {"query": "select nope from members"})
    (tmp_path / "text.db").write_text("not a database")
    assert "cannot open" in error(tmp_path / "text.db", {})


def test_sqlite_urls_follow_sqlalchemy_three_slashes_relative_four_absolute(legacy: Path, tmp_path: Path) -> None:
    relative = legacy.relative_to(tmp_path).as_posix()  # data/legacy.db
    spec = SourceSpec.model_validate({"type": "sqlite", "url": f"sqlite:///{relative}", "tables": {"members": {}}})
    ctx = ReadContext("legacy", "members", spec, spec.tables["members"], tmp_path, url=f"sqlite:///{relative}")
    assert pa.Table.from_batches(list(read_batches(ctx))).num_rows == 2  # relative to the project root
    found, _ = read(f"sqlite:///{legacy}", {})  # four slashes: /tmp/... absolute
    assert pa.Table.from_batches(found).num_rows == 2
    with pytest.raises(SourceError, match=r"the SQLite file /data/legacy.db does not exist"):
        read(f"sqlite:////{relative}", {})  # four slashes and no root: /data/legacy.db, not the project's


def test_kiban_collect_lands_a_sqlite_table_exactly_once(make_project: Any) -> None:
    root = make_project({"sources/legacy.yml": "type: sqlite\nurl: env:LEGACY_DB\ntables:\n  members:\n"
                                               "    mode: incremental\n    cursor: id\n    primary_key: [id]\n"})
    path = database(root / "data/legacy.db", "create table members (id integer primary key, name text)",
                    "insert into members values (1, 'a'), (2, 'b')")
    env = {**os.environ, "LEGACY_DB": "data/legacy.db", "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}

    def collect() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), "collect"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    first = collect()
    assert first.returncode == 0, first.stdout + first.stderr
    database(path, "insert into members values (3, 'c')")
    second = collect()
    assert second.returncode == 0, second.stdout + second.stderr
    import duckdb

    landed = duckdb.sql(f"select id from read_parquet('{root}/lake/legacy/members/**/*.parquet') order by id")
    assert [r[0] for r in landed.fetchall()] == [1, 2, 3]
    broken = subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), "collect"],
                            env={**env, "LEGACY_DB": "data/missing.db"}, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0
    assert "Traceback" not in broken.stdout + broken.stderr
    assert "missing.db does not exist" in broken.stdout + broken.stderr
