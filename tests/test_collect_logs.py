"""The logs connector: access log lines into typed columns, bad lines quarantined with file:line."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kiban.collect.connector import LandedFile, ReadContext, SourceError, read_batches
from kiban.collect.connectors import textfile
from kiban.collect.spec import SourceSpec

LINES = [
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
    '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
    '10.0.0.1 - - [10/Oct/2000:13:55:37 +0900] "\\x16\\x03\\x01" 400 - "-" "-"',
    "garbage line",
    "",
    '10.0.0.2 - - [99/Foo/2000:13:55:37 +0900] "GET / HTTP/1.1" 200 5 "-" "x"',
    '10.0.0.3 - - [01/Jan/2024:00:00:00 +0000] "POST /a?b=1 HTTP/2.0" 201 0 "-" "say \\"hi\\""',
    '192.168.0.9 - - [01/Jan/2024:09:00:00 +0900] "GET /common HTTP/1.1" 304 -',
]


def load(root: Path, landed: set[LandedFile] | None = None, **table: Any) -> tuple[list[dict[str, Any]], ReadContext]:
    spec = SourceSpec.model_validate({"type": "logs", "settle": "0s", "tables": {"access": table}})
    seen = landed if landed is not None else set()
    ctx = ReadContext("web", "access", spec, spec.tables["access"], root, landed=lambda f: f in seen)
    rows = [row for batch in read_batches(ctx) for row in pa.Table.from_batches([batch]).to_pylist()]
    return rows, ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "access.log").write_text("\n".join(LINES) + "\n")
    return tmp_path


def test_combined_lines_become_typed_columns(root: Path) -> None:
    rows, _ = load(root, path="logs/access.log")
    assert rows[0] == {
        "remote_addr": "127.0.0.1", "remote_user": "frank", "time": datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC),
        "method": "GET", "path": "/apache_pb.gif", "protocol": "HTTP/1.0", "status": 200, "bytes": 2326,
        "referer": "http://www.example.com/start.html", "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        "_source_file": "logs/access.log", "_source_line": 1}
    junk, post, common = rows[1], rows[2], rows[3]
    assert (junk["method"], junk["path"], junk["status"], junk["bytes"], junk["referer"]) == \
        (None, "\\x16\\x03\\x01", 400, None, None)
    assert junk["time"] == datetime(2000, 10, 10, 4, 55, 37, tzinfo=UTC)
    assert (post["method"], post["path"], post["user_agent"], post["_source_line"]) == \
        ("POST", "/a?b=1", 'say "hi"', 6)
    assert (common["path"], common["status"], common["referer"], common["_source_line"]) == ("/common", 304, None, 7)


def test_lines_not_in_the_format_are_quarantined_with_file_and_line(root: Path) -> None:
    rows, ctx = load(root, path="logs/access.log")
    assert [(b.location, b.reason) for b in ctx.bad_rows] == [
        ("logs/access.log:3", "not a combined log line"),
        ("logs/access.log:5", "time is not like 10/Oct/2000:13:55:36 -0700")]
    assert ctx.bad_rows[0].raw == "garbage line"
    assert len(rows) + len(ctx.bad_rows) == 6  # non-blank lines


def test_common_format_refuses_combined_extras(root: Path) -> None:
    rows, ctx = load(root, path="logs/access.log", format="common")
    assert [r["_source_line"] for r in rows] == [7]
    assert len(ctx.bad_rows) == 5


def test_gzip_rotations_invalid_bytes_and_landing_once(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textfile, "BLOCK_BYTES", 100)
    body = "\n".join(LINES[0:2] * 50).encode() + b"\n\xff\xfe bad bytes\n"
    (root / "logs" / "access.log.1.gz").write_bytes(gzip.compress(body))
    landed: set[LandedFile] = set()
    rows, ctx = load(root, landed, path="logs/access.log*")
    assert len(rows) == 100 + 4
    gz = [r for r in rows if r["_source_file"] == "logs/access.log.1.gz"]
    assert [r["_source_line"] for r in gz] == list(range(1, 101))
    assert ("logs/access.log.1.gz:101", "invalid utf-8 bytes at byte 1") in [(b.location, b.reason)
                                                                              for b in ctx.bad_rows]
    landed.update(ctx.files)
    again, ctx2 = load(root, landed, path="logs/access.log*")
    assert again == []
    assert ctx2.files == []


def test_unknown_format_is_a_source_error(root: Path) -> None:
    with pytest.raises(SourceError, match="format"):
        load(root, path="logs/access.log", format="iis")


def test_kiban_collect_lands_typed_log_rows(root: Path, cli: Any) -> None:
    import duckdb

    (root / "sources").mkdir()
    (root / "kiban.yml").write_text("name: web\ntimezone: Asia/Tokyo\n")
    (root / "sources" / "web.yml").write_text("type: logs\nsettle: 0s\ntables:\n  access:\n    path: logs/access.log*\n"
                                              "    time_column: time\n")
    done = cli("--project", root, "collect")
    assert done.returncode == 0, done.stdout + done.stderr
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    rows = con.execute(f"select time, status, bytes, _source_line from read_parquet('{root}/lake/web/access/**/"
                       "*.parquet') order by _source_line").fetchall()
    first = rows[0]
    assert (first[0].isoformat(), first[1], first[2], first[3]) == ("2000-10-10T20:55:36+00:00", 200, 2326, 1)
    assert len(rows) == 4
    shown = cli("--project", root, "quarantine", "show", "web_access")
    assert "logs/access.log:3" in shown.stdout
