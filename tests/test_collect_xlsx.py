"""The xlsx connector on hand-typed workbooks made with openpyxl."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from openpyxl import Workbook

from kiban.collect.connector import LandedFile, ReadContext, SourceError, read_batches
from kiban.collect.spec import SourceSpec


def load(root: Path, columns: list[dict[str, str]] | None = None, landed: set[LandedFile] | None = None,
         **table: Any) -> tuple[list[dict[str, Any]], ReadContext]:
    spec = SourceSpec.model_validate({"type": "xlsx", "settle": "0s",  # complete when written
                                      "tables": {"shifts": {**table, "columns": columns or []}}})
    seen = landed if landed is not None else set()
    ctx = ReadContext("staff", "shifts", spec, spec.tables["shifts"], root, batch_rows=2, landed=lambda f: f in seen)
    rows = [row for batch in read_batches(ctx) for row in pa.Table.from_batches([batch]).to_pylist()]
    return rows, ctx


def shift_book(path: Path) -> Path:
    """A sheet as people type them: a title, a blank row, a header with stray spaces, a merged cell."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "シフト"
    book.create_sheet("メモ")["A1"] = "nothing here"
    sheet["A1"] = "2024年5月 シフト表"
    sheet.append([])
    sheet.append([" 社員番号 ", "氏名", "日付", "時間", None, "備考"])  # row 3; E3 is the tail of a merge of D3:E3
    sheet.merge_cells("D3:E3")
    sheet.append([101, "山田 太郎", date(2024, 5, 1), 9, 18, "早番"])
    sheet.append(["１０２", "佐藤 花子", "2024/5/2", 10.0, 19, 12.5])
    sheet.append([None, None, None, None, None, None])
    sheet.append(["103x", "鈴木", "not a date", 8, 17, None])
    sheet.append([104, "高橋", 45420, 8, 17, datetime(2024, 5, 4, 9, 30)])
    sheet.append(["   ", "", None])  # blank row typed with spaces
    book.save(path)
    return path


DECLARED = [{"name": "社員番号", "type": "INTEGER"}, {"name": "日付", "type": "DATE"},
            {"name": "備考", "type": "VARCHAR"}]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "sheets").mkdir()
    shift_book(tmp_path / "sheets" / "shifts_2024_05.xlsx")
    return tmp_path


def test_header_row_and_auto_extent(root: Path) -> None:
    rows, ctx = load(root, DECLARED, path="sheets/*.xlsx", sheet="シフト", header_row=3)
    assert list(rows[0]) == ["社員番号", "氏名", "日付", "時間", "時間_E", "備考", "_source_file", "_source_line"]
    assert "シフト!E: blank header cell, named the column 時間_E" in ctx.notes
    assert [(r["社員番号"], r["日付"], r["_source_line"]) for r in rows] == [
        ("101", "2024-05-01", 4), ("102", "2024-05-02", 5), ("104", "2024-05-08", 8)]
    assert [r["備考"] for r in rows] == ["早番", "12.5", "2024-05-04 09:30:00"]  # mixed types kept as text
    assert rows[1]["時間"] == "10"  # undeclared: canonical text


def test_cells_that_do_not_fit_are_quarantined_with_sheet_and_cell(root: Path) -> None:
    rows, ctx = load(root, DECLARED, path="sheets/*.xlsx", sheet="シフト", header_row=3)
    [bad] = ctx.bad_rows
    assert bad.location == "sheets/shifts_2024_05.xlsx シフト!A7"
    assert bad.column == "社員番号"
    assert bad.line == 7
    assert bad.reason == ("シフト!A7 (column 社員番号): '103x' is not a whole number (INTEGER); "
                          "シフト!C7 (column 日付): 'not a date' is not a date (DATE)")
    assert bad.raw.startswith("103x\t鈴木\tnot a date")
    assert len(rows) + len(ctx.bad_rows) == 4  # non-empty data rows


def test_range_and_sheet_index(root: Path) -> None:
    rows, _ = load(root, path="sheets/shifts_2024_05.xlsx", sheet=0, range="A3:C5")
    assert rows == [
        {"社員番号": "101", "氏名": "山田 太郎", "日付": "2024-05-01", "_source_file": "sheets/shifts_2024_05.xlsx",
         "_source_line": 4},
        {"社員番号": "１０２", "氏名": "佐藤 花子", "日付": "2024/5/2", "_source_file": "sheets/shifts_2024_05.xlsx",
         "_source_line": 5}]


def test_no_header_uses_column_names(root: Path) -> None:
    rows, _ = load(root, path="sheets/*.xlsx", range="A4:B5", header=False, column_names=["id", "name"])
    assert [(r["id"], r["name"]) for r in rows] == [("101", "山田 太郎"), ("１０２", "佐藤 花子")]


def test_each_workbook_lands_once(root: Path) -> None:
    landed: set[LandedFile] = set()
    rows, ctx = load(root, path="sheets/*.xlsx", header_row=3, landed=landed)
    assert len(rows) == 4
    assert [f.path for f in ctx.files] == ["sheets/shifts_2024_05.xlsx"]
    landed.update(ctx.files)
    again, ctx2 = load(root, path="sheets/*.xlsx", header_row=3, landed=landed)
    assert again == []
    assert ctx2.files == []


def test_mistakes_name_the_sheet_or_the_file(root: Path) -> None:
    with pytest.raises(SourceError, match=r"there is no sheet 'Shift' \(sheets: シフト, メモ\)"):
        load(root, path="sheets/*.xlsx", sheet="Shift")
    with pytest.raises(SourceError, match=r"シフト!2: the header row is empty"):
        load(root, path="sheets/*.xlsx", header_row=2)
    with pytest.raises(SourceError, match="'A3-F9' is not a cell range"):
        load(root, path="sheets/*.xlsx", range="A3-F9")
    (root / "sheets" / "broken.xlsx").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match=r"broken\.xlsx: not a readable \.xlsx workbook"):
        load(root, path="sheets/broken.xlsx")


def test_kiban_collect_lands_a_sheet_with_declared_types(root: Path, cli: Any) -> None:
    import duckdb

    (root / "sources").mkdir()
    (root / "kiban.yml").write_text("name: staff\ntimezone: Asia/Tokyo\n")
    (root / "sources" / "staff.yml").write_text(
        "type: xlsx\nsettle: 0s\ntables:\n  shifts:\n    path: sheets/*.xlsx\n    header_row: 3\n    columns:\n"
        "      - {name: 社員番号, type: INTEGER}\n      - {name: 日付, type: DATE}\n")
    done = cli("--project", root, "collect")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = duckdb.connect().execute(f"select 社員番号, 日付, 時間_E from read_parquet('{root}/lake/staff/shifts/**/"
                                    "*.parquet') order by 1").fetchall()
    assert rows == [(101, date(2024, 5, 1), "18"), (102, date(2024, 5, 2), "19"), (104, date(2024, 5, 8), "17")]
    shown = cli("--project", root, "quarantine", "show", "staff_shifts")
    assert "シフト!A7" in shown.stdout
