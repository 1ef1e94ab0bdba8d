"""The files connector through the connector contract: encodings, gzip, globs, landing once, quarantine."""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kiban.collect.connector import LandedFile, ReadContext, SourceError, read_batches
from kiban.collect.connectors import textfile, transcoding
from kiban.collect.spec import SourceSpec

Read = Callable[..., tuple[list[dict[str, Any]], ReadContext]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "landing").mkdir()
    return tmp_path


def context(root: Path, table: dict[str, Any], *, landed: set[LandedFile] | None = None,
            batch_rows: int = 100_000, columns: list[dict[str, str]] | None = None,
            source_type: str = "files") -> ReadContext:
    spec = SourceSpec.model_validate({"type": source_type, "settle": "0s",  # complete when written
                                      "tables": {"t": {**table, "columns": columns or []}}})
    seen = landed if landed is not None else set()
    return ReadContext("shop", "t", spec, spec.tables["t"], root, batch_rows=batch_rows,
                       landed=lambda f: f in seen)


def rows_of(ctx: ReadContext) -> list[dict[str, Any]]:
    batches = list(read_batches(ctx))
    for batch in batches:
        assert batch.num_rows <= ctx.batch_rows
    return [row for batch in batches for row in pa.Table.from_batches([batch]).to_pylist()]


def read(root: Path, **table: Any) -> tuple[list[dict[str, Any]], ReadContext]:
    ctx = context(root, table)
    return rows_of(ctx), ctx


JAPANESE = "id,店舗,商品,金額\n1,東京本店,りんご（青森産）,120\n2,大阪梅田店,①番の棚 ㈱,98\n"


@pytest.mark.parametrize(("declared", "codec"), [("cp932", "cp932"), ("shift_jis", "cp932"), ("euc-jp", "euc_jp"),
                                                 ("utf-8-sig", "utf-8-sig"), ("utf-8", "utf-8")])
def test_japanese_encodings_declared(root: Path, declared: str, codec: str) -> None:
    text = JAPANESE.replace("①番の棚 ㈱", "二番の棚") if codec == "euc_jp" else JAPANESE
    (root / "landing" / "a.csv").write_bytes(text.encode(codec))
    rows, ctx = read(root, path="landing/*.csv", encoding=declared)
    assert [r["店舗"] for r in rows] == ["東京本店", "大阪梅田店"]
    assert rows[0] == {"id": "1", "店舗": "東京本店", "商品": "りんご（青森産）", "金額": "120",
                       "_source_file": "landing/a.csv", "_source_line": 2}
    assert ctx.bad_rows == []


@pytest.mark.parametrize(("codec", "expected"), [("cp932", "cp932"), ("euc_jp", "euc_jp"),
                                                 ("utf-8-sig", "utf-8-sig"), ("utf-8", "utf-8")])
def test_encoding_auto_detects_and_says_so(root: Path, codec: str, expected: str) -> None:
    text = JAPANESE.replace("①番の棚 ㈱", "二番の棚")
    (root / "landing" / "a.csv").write_bytes(text.encode(codec))
    rows, ctx = read(root, path="landing/a.csv", encoding="auto")
    assert rows[1]["商品"] == "①番の棚 ㈱".replace("①番の棚 ㈱", "二番の棚")
    assert f"landing/a.csv: encoding detected as {expected}" in ctx.notes


def test_bom_is_not_part_of_the_first_column_name(root: Path) -> None:
    (root / "landing" / "a.csv").write_bytes("\ufeffid,name\n1,x\n".encode())
    rows, _ = read(root, path="landing/a.csv")  # declared utf-8, file has a BOM
    assert list(rows[0])[:2] == ["id", "name"]


def test_invalid_bytes_in_the_declared_encoding_are_quarantined_with_their_line(root: Path) -> None:
    good = "1,東京,10\n".encode("cp932")
    data = b"id,name,amount\n" + good + b"2,\x82\xff,20\n" + b"3,\xfd,30\n" + "4,大阪,40\n".encode("cp932")
    (root / "landing" / "a.csv").write_bytes(data)
    rows, ctx = read(root, path="landing/a.csv", encoding="cp932")
    assert [(r["id"], r["_source_line"]) for r in rows] == [("1", 2), ("4", 5)]
    assert [(b.location, b.line) for b in ctx.bad_rows] == [("landing/a.csv:3", 3), ("landing/a.csv:4", 4)]
    assert "invalid cp932 bytes" in ctx.bad_rows[0].reason
    assert ctx.bad_rows[0].raw.startswith("2,")


def _every_cp932_character() -> list[str]:
    found: list[str] = []
    for first in [*range(0x81, 0xA0), *range(0xE0, 0xFD)]:
        for second in range(0x40, 0xFD):
            with contextlib.suppress(UnicodeDecodeError):
                found.append(textfile.decode(bytes([first, second]), "cp932"))
    return found + [chr(c) for c in range(0xFF61, 0xFFA0)]  # and the half-width katakana


def test_every_cp932_character_lands_as_pythons_codec_reads_it(root: Path) -> None:
    # the fast path transcodes with iconv (where it agrees with Python's codec): the values must not change
    characters = _every_cp932_character()
    assert len(characters) > 7000
    assert transcoding.agrees("cp932")  # glibc's CP932 table matches Python's here: the fast path is used
    body = "".join(f"{i},x{char}y\n" for i, char in enumerate(characters))
    data = ("id,value\n" + body).encode("cp932")
    assert transcoding.to_utf8(data, "cp932") == data.decode("cp932").encode("utf-8")
    (root / "landing" / "a.csv").write_bytes(data)
    rows, ctx = read(root, path="landing/a.csv", encoding="shift_jis")
    assert not ctx.bad_rows
    assert [r["value"] for r in rows] == [f"x{char}y" for char in characters]
    assert [r["_source_line"] for r in rows] == list(range(2, len(characters) + 2))


@pytest.mark.parametrize("bad", [b"\x82\xff", b"\x81\x20", b"\x80", b"\xa0", b"\xfd", b"\x81"])
def test_iconv_gives_up_where_the_bytes_are_no_cp932_and_the_line_is_quarantined(root: Path, bad: bytes) -> None:
    assert transcoding.to_utf8(b"1," + bad + b"\n", "cp932") is None
    lines = [f"{i},東京{i}\n".encode("cp932") for i in range(1, 2000)]
    lines[1500] = b"1501,x" + bad + b"\n"
    (root / "landing" / "a.csv").write_bytes(b"id,name\n" + b"".join(lines))
    rows, ctx = read(root, path="landing/a.csv", encoding="cp932")
    assert len(rows) == 1998
    assert rows[-1] == {"id": "1999", "name": "東京1999", "_source_file": "landing/a.csv",
                        "_source_line": 2000}
    [refused] = ctx.bad_rows
    assert (refused.line, refused.raw[:5]) == (1502, "1501,")
    assert "invalid cp932 bytes" in refused.reason


def test_where_iconv_reads_more_than_pythons_codec_it_is_not_used(root: Path) -> None:
    # glibc's EUC-JP takes the C1 bytes 0x80-0x8D as characters, Python's codec refuses them: the check finds
    # the disagreement, EUC-JP is decoded by Python, and such a line is quarantined, never landed
    assert not transcoding.agrees("euc_jp")
    assert transcoding.to_utf8("東京\n".encode("euc_jp"), "euc_jp") is None
    (root / "landing" / "a.csv").write_bytes(b"id,name\n" + "1,東京\n".encode("euc_jp") + b"2,\x85\n")
    rows, ctx = read(root, path="landing/a.csv", encoding="euc-jp")
    assert [(r["name"], r["_source_line"]) for r in rows] == [("東京", 2)]
    assert [(b.line, b.reason) for b in ctx.bad_rows] == [(3, "invalid euc_jp bytes at byte 3 of the line")]


def test_ragged_rows_broken_quotes_and_nul_are_quarantined_and_counts_reconcile(root: Path) -> None:
    lines = ["id,name,note", "1,a,ok", "2,b", "3,\"multi", "line\",fine", "", "4,\"open,x", "5,c,d\x00e",
             "6,d,e,f", "7,e,end"]
    (root / "landing" / "a.csv").write_text("\n".join(lines) + "\n")
    rows, ctx = read(root, path="landing/a.csv")
    assert [(r["id"], r["_source_line"]) for r in rows] == [("1", 2), ("3", 4), ("7", 10)]
    assert rows[1]["name"] == "multi\nline"
    reasons = {b.line: b.reason for b in ctx.bad_rows}
    assert sorted(reasons) == [3, 7, 8, 9]
    assert reasons[3] == "ragged row: 2 fields, expected 3"
    assert "unterminated quote" in reasons[7]
    assert "NUL" in reasons[8]
    assert reasons[9] == "ragged row: 4 fields, expected 3"
    assert len(rows) + len(ctx.bad_rows) == 7  # data records: 8 non-blank lines, one record spans two


def test_huge_field_is_quarantined(root: Path) -> None:
    (root / "landing" / "a.csv").write_text("id,blob\n1,small\n2," + "x" * 5000 + "\n3,ok\n")
    rows, ctx = read(root, path="landing/a.csv", max_field_bytes=1000)
    assert [r["id"] for r in rows] == ["1", "3"]
    assert ctx.bad_rows[0].line == 3
    assert ctx.bad_rows[0].column == "blob"
    assert "over the limit of 1000" in ctx.bad_rows[0].reason


def test_gzip_glob_and_lines_across_blocks(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textfile, "BLOCK_BYTES", 64)  # many small blocks: line numbers must carry over
    body = "".join(f"{i},\"name {i}\nsecond line\",{i * 2}\n" if i % 7 == 0 else f"{i},name {i},{i * 2}\n"
                   for i in range(1, 301))
    (root / "landing" / "a.csv.gz").write_bytes(gzip.compress(("id,name,twice\n" + body).encode()))
    (root / "landing" / "b.csv").write_text("id,name,twice\n1000,z,2000\n")
    (root / "landing" / "ignored.json").write_text("[]")
    ctx = context(root, {"path": ["landing/*.csv.gz", "landing/b.csv"]}, batch_rows=50)
    rows = rows_of(ctx)
    assert len(rows) == 301
    assert ctx.bad_rows == []
    line = 2
    for row in rows[:300]:
        assert row["_source_line"] == line
        assert row["_source_file"] == "landing/a.csv.gz"
        line += 2 if "\n" in row["name"] else 1
    assert rows[-1] == {"id": "1000", "name": "z", "twice": "2000", "_source_file": "landing/b.csv",
                        "_source_line": 2}
    assert [f.path for f in ctx.files] == ["landing/a.csv.gz", "landing/b.csv"]


def test_landing_folder_reads_each_file_once(root: Path) -> None:
    (root / "landing" / "a.csv").write_text("id\n1\n")
    landed: set[LandedFile] = set()
    first = context(root, {"path": "landing/*.csv"}, landed=landed)
    assert len(rows_of(first)) == 1
    landed.update(first.files)  # what the loader commits
    (root / "landing" / "b.csv").write_text("id\n2\n")
    second = context(root, {"path": "landing/*.csv"}, landed=landed)
    assert [r["id"] for r in rows_of(second)] == ["2"]
    assert [f.path for f in second.files] == ["landing/b.csv"]
    (root / "landing" / "a.csv").write_text("id\n1\n3\n")  # changed content: a new file to land
    third = context(root, {"path": "landing/*.csv"}, landed=landed | set(second.files))
    assert [r["id"] for r in rows_of(third)] == ["1", "3"]


def test_tsv_no_header_skip_rows_null_values_and_quote(root: Path) -> None:
    (root / "landing" / "a.tsv").write_text("exported 2024-05-01\n\n1\tN/A\t'a\tb'\n2\tx\t\n")
    rows, _ = read(root, path="landing/a.tsv", header=False, skip_rows=1, column_names=["id", "v", "w"],
                     null_values=["N/A", ""], quote="'")
    assert [(r["id"], r["v"], r["w"], r["_source_line"]) for r in rows] == [("1", None, "a\tb", 3),
                                                                            ("2", "x", None, 4)]


def test_header_names_are_trimmed_and_blank_or_repeated_names_explained(root: Path) -> None:
    (root / "landing" / "a.csv").write_text(" id , name ,,name\n1,a,b,c\n")
    rows, ctx = read(root, path="landing/a.csv")
    assert list(rows[0])[:4] == ["id", "name", "column_3", "name_4"]
    assert any("blank" in n for n in ctx.notes)
    assert any("repeats" in n for n in ctx.notes)


def test_no_header_uses_declared_columns(root: Path) -> None:
    (root / "landing" / "a.csv").write_text("1,a\n2,b\n")
    ctx = context(root, {"path": "landing/a.csv", "header": False},
                  columns=[{"name": "id", "type": "INTEGER"}, {"name": "name"}])
    assert [(r["id"], r["name"]) for r in rows_of(ctx)] == [("1", "a"), ("2", "b")]


def test_jsonl(root: Path) -> None:
    lines = [json.dumps({"id": 1, "name": "東京", "tags": ["a"]}, ensure_ascii=False), "", "{broken",
             json.dumps([1, 2]), json.dumps({"id": 2, "extra": True})]
    (root / "landing" / "a.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("euc_jp")))
    rows, ctx = read(root, path="landing/*.jsonl.gz", encoding="euc-jp")
    assert rows == [{"id": "1", "name": "東京", "tags": '["a"]', "extra": None, "_source_file": "landing/a.jsonl.gz",
                     "_source_line": 1},
                    {"id": "2", "name": None, "tags": None, "extra": "true", "_source_file": "landing/a.jsonl.gz",
                     "_source_line": 5}]
    assert [(b.line, b.reason.split(":")[0]) for b in ctx.bad_rows] == [(3, "not valid JSON"),
                                                                        (4, "a JSON list, not an object")]


def test_json_array_with_record_path(root: Path) -> None:
    doc = {"data": {"items": [{"id": 1, "v": 1.5}, "oops", {"id": 2, "v": None}]}}
    (root / "landing" / "a.json").write_text(json.dumps(doc))
    rows, ctx = read(root, path="landing/a.json", record_path="data.items")
    assert [(r["id"], r["v"], r["_source_line"]) for r in rows] == [("1", "1.5", 1), ("2", None, 3)]
    assert ctx.bad_rows[0].location == "landing/a.json record 2"


def test_json_that_does_not_parse_is_quarantined_whole(root: Path) -> None:
    (root / "landing" / "a.json").write_text('[{"id": 1},\n{"id": ]')
    rows, ctx = read(root, path="landing/a.json")
    assert rows == []
    assert ctx.bad_rows[0].line == 2
    assert "whole file" in ctx.bad_rows[0].reason
    assert [f.path for f in ctx.files] == ["landing/a.json"]


def test_json_without_records_at_the_path_is_a_source_error(root: Path) -> None:
    (root / "landing" / "a.json").write_text('{"data": {}}')
    with pytest.raises(SourceError, match=r"no array of records at record_path data\.items"):
        read(root, path="landing/a.json", record_path="data.items")


def test_parquet_keeps_types(root: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2], "at": pa.array([1, 2], pa.timestamp("s"))}), root / "landing" / "a.parquet")
    rows, _ = read(root, path="landing/*.parquet")
    assert rows[1]["id"] == 2
    assert rows[1]["_source_line"] == 2
    assert isinstance(rows[0]["id"], int)


def test_mistakes_are_source_errors(root: Path) -> None:
    with pytest.raises(SourceError, match="folder nowhere does not exist"):
        read(root, path="nowhere/*.csv")
    with pytest.raises(SourceError, match="encoding 'latin9' is not supported"):
        read(root, path="landing/*.csv", encoding="latin9")
    with pytest.raises(SourceError, match="delimiter: Value error, ';;' must be a single character"):
        read(root, path="landing/*.csv", delimiter=";;")
    with pytest.raises(SourceError, match="pathh: Extra inputs are not permitted"):
        read(root, path="landing/*.csv", pathh="landing/*.csv")
    (root / "landing" / "a.xml").write_text("<a/>")
    with pytest.raises(SourceError, match=r"a.xml: cannot tell the format from '.xml'"):
        read(root, path="landing/a.xml")
    (root / "landing" / "b.csv").write_bytes(b"\x82\xa0\xff,x\n1,2\n")
    with pytest.raises(SourceError, match=r"landing/b.csv:1: the header is not cp932"):
        read(root, path="landing/b.csv", encoding="cp932")
    (root / "landing" / "c.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        read(root, path="landing/c.parquet")


def test_no_matching_file_is_an_error_naming_the_path_or_a_note_when_optional(root: Path) -> None:
    with pytest.raises(SourceError, match=r"path landing/\*.csv matches no file"):
        read(root, path="landing/*.csv")
    rows, ctx = read(root, path="landing/*.csv", optional=True)
    assert rows == []
    assert ctx.notes == ["no file matches landing/*.csv (optional)"]


def test_kiban_collect_lands_a_cp932_landing_folder_once(tmp_path: Path, cli: Callable[..., Any]) -> None:
    import duckdb

    root = tmp_path / "shop"
    (root / "sources").mkdir(parents=True)
    (root / "landing").mkdir()
    (root / "kiban.yml").write_text("name: shop\ntimezone: UTC\n")
    (root / "sources" / "shop.yml").write_text(
        "type: files\nsettle: 0s\ntables:\n  orders:\n    path: landing/orders_*.csv\n    encoding: auto\n"
        "    columns:\n"
        "      - {name: order_id, type: INTEGER}\n      - {name: amount, type: 'DECIMAL(10,2)'}\n")
    (root / "landing" / "orders_1.csv").write_bytes(
        "order_id,store,amount\n1,東京本店,100.5\n2,大阪店\n3,名古屋店,abc\n4,札幌店,7\n".encode("cp932"))
    first = cli("--project", root, "collect")
    assert first.returncode == 0, first.stdout + first.stderr
    parquet = f"{root}/lake/shop/orders/**/*.parquet"
    rows = duckdb.connect().execute(f"select order_id, store, amount, _source_file, _source_line "
                                    f"from read_parquet('{parquet}') order by order_id").fetchall()
    assert [(r[0], r[1], float(r[2]), r[3], r[4]) for r in rows] == [
        (1, "東京本店", 100.5, "landing/orders_1.csv", 2), (4, "札幌店", 7.0, "landing/orders_1.csv", 5)]
    shown = cli("--project", root, "quarantine", "show", "shop_orders")
    assert "landing/orders_1.csv:3" in shown.stdout
    assert "ragged row" in shown.stdout
    (root / "landing" / "orders_2.csv").write_bytes("order_id,store,amount\n5,福岡店,1\n".encode("cp932"))
    second = cli("--project", root, "collect")
    assert second.returncode == 0, second.stdout + second.stderr
    count = duckdb.connect().execute(f"select count(*), max(order_id) from read_parquet('{parquet}')").fetchone()
    assert count == (3, 5)  # orders_1.csv was not read again


def test_long_preamble_and_bom_without_header(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textfile, "BLOCK_BYTES", 16)
    preamble = "".join(f"note line {i}\n" for i in range(10))
    (root / "landing" / "a.csv").write_text(preamble + "\n\nid,name\n1,x\n")
    rows, _ = read(root, path="landing/a.csv", skip_rows=10)
    assert [(r["id"], r["_source_line"]) for r in rows] == [("1", 14)]
    (root / "landing" / "b.csv").write_bytes("\ufeff1,x\n2,y\n".encode())
    for encoding in ("utf-8", "utf-8-sig"):
        rows, _ = read(root, path="landing/b.csv", header=False, encoding=encoding)
        assert [(r["column_1"], r["_source_line"]) for r in rows] == [("1", 1), ("2", 2)]


def test_a_line_longer_than_memory_allows_is_quarantined_by_its_head(root: Path) -> None:
    # max_field_bytes 1000: lines over 16 MiB are not held; this one is cut to its head and refused
    (root / "landing" / "a.csv").write_bytes(b"id,blob\n1,ok\n2," + b"y" * (17 << 20) + b"\n3,fine\n")
    rows, ctx = read(root, path="landing/a.csv", max_field_bytes=1000)
    assert [(r["id"], r["_source_line"]) for r in rows] == [("1", 2), ("3", 4)]
    [bad] = ctx.bad_rows
    assert bad.line == 3
    assert "over the limit" in bad.reason


@pytest.mark.parametrize("pattern", ["landing/products_*.csv", "landing/products_?.csv", "landing/products_[0-9].csv",
                                     "./landing/products_*.csv", "landing/**/products_*.csv", "products_*.csv"])
def test_a_glob_in_the_file_name_reads_the_folder_it_names(root: Path, pattern: str) -> None:
    target = root / ("products_1.csv" if "/" not in pattern else "landing/products_1.csv")
    target.write_text("id\n1\n")
    rows, _ = read(root, path=pattern)
    assert [r["id"] for r in rows] == ["1"]
    with pytest.raises(SourceError, match="folder missing does not exist"):
        read(root, path="missing/products_*.csv")
