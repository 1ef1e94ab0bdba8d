"""A delivery's file: xlsx with formatting (bold frozen header, filter, widths, date and number formats) or CSV in
UTF-8 with a BOM (Excel opens it right) or CP932 (Shift_JIS, for older Japanese systems).

No cell is ever a live formula: text starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return)
gets a leading apostrophe in CSV (:func:`kiban.spreadsheets.inert`), and every text cell of an xlsx is written as
text, whatever it starts with.
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from kiban.errors import UsageError
from kiban.spreadsheets import inert

MAX_WIDTH = 60


def write_csv(table: pa.Table, path: Path, encoding: str) -> None:
    """CSV with a header; ``cp932`` refuses a value it cannot encode (a person would get ? in its place)."""
    rows = table.to_pylist()
    try:
        with path.open("w", newline="", encoding=encoding, errors="strict") as handle:
            writer = csv.writer(handle)
            writer.writerow([inert(c) for c in table.column_names])
            for row in rows:
                writer.writerow([_text(inert(v)) for v in row.values()])
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end]
        raise UsageError(f"the value {bad!r} cannot be written in {encoding}",
                         "deliver it as utf-8-sig (UTF-8 with a BOM, which Excel opens), or as xlsx") from None


def _text(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else value
    return value


def write_xlsx(table: pa.Table, path: Path, sheet_name: str) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_name[:31])
    names = table.column_names
    widths = [min(MAX_WIDTH, max(8, len(n) + 2)) for n in names]
    formats: list[str | None] = []
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            formats.append("yyyy-mm-dd hh:mm")
        elif pa.types.is_date(field.type):
            formats.append("yyyy-mm-dd")
        elif pa.types.is_integer(field.type):
            formats.append("#,##0")
        elif pa.types.is_floating(field.type) or pa.types.is_decimal(field.type):
            formats.append("#,##0.00")
        else:
            formats.append(None)
    rows = table.to_pylist()
    for row in rows[:200]:
        for i, value in enumerate(row.values()):
            widths[i] = min(MAX_WIDTH, max(widths[i], len(str(value)) + 2 if value is not None else 0))
    for i, width in enumerate(widths):
        sheet.column_dimensions[get_column_letter(i + 1)].width = width
    sheet.freeze_panes = "A2"
    if names:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(names))}{len(rows) + 1}"
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="E5E7EB")
    header = []
    for name in names:
        cell = WriteOnlyCell(sheet, value=name)
        cell.data_type = "s"
        cell.font, cell.fill, cell.alignment = bold, fill, Alignment(vertical="center")
        header.append(cell)
    sheet.append(header)
    for row in rows:
        out = []
        for i, value in enumerate(row.values()):
            if value is not None and not isinstance(value, int | float | str | date | datetime):
                value = str(value)
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.replace(tzinfo=None)  # Excel has no time zones: the value as stored (UTC)
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, even when it starts with "=": never a formula
            elif formats[i] and value is not None:
                cell.number_format = formats[i]
            out.append(cell)
        sheet.append(out)
    book.save(path)
