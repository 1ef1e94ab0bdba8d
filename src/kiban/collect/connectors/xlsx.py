"""Excel workbooks typed by hand: one sheet (or a range of it) becomes a table.

``sources/shifts.yml``::

    type: xlsx
    tables:
      shifts:
        path: sheets/shifts_*.xlsx    # glob(s); each workbook is landed once
        sheet: シフト                  # a name, or an index from 0 (default: the first sheet)
        range: A3:F200                # optional; otherwise the header row and its extent
        header_row: 3                 # without a range: the row with the column names (default 1)
        columns:
          - {name: staff_id, type: INTEGER}
          - {name: date, type: DATE}

Hand-typed sheets are forgiving where it is safe and strict where it is not: header names are trimmed,
blank or repeated header cells get a name that says where they are (``column_D``, ``date_E``), empty rows
are skipped, full-width digits and thousands separators are read as numbers, Excel date serials as
dates. A cell that does not fit its column's declared type quarantines its row with the cell's location
(``シフト!C7``). Values come out as text in a canonical form (``12``, ``2024-05-01``) that the loader
casts to the declared types; undeclared columns stay text. See docs/connectors/xlsx.md.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kiban.collect.connector import BadRow, ReadContext
from kiban.collect.connectors import files, textfile
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | list[str]
    sheet: str | int = 0
    range: str | None = None  # e.g. A3:F200; its first row is the header (unless header: false)
    header_row: int = Field(default=1, ge=1)
    header: bool = True
    column_names: list[str] | None = None

    @field_validator("range")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\$?[A-Za-z]{1,3}\$?\d+:\$?[A-Za-z]{1,3}\$?\d+", value.strip()):
            raise ValueError(f"'{value}' is not a cell range like A3:F200")
        return value.strip().replace("$", "").upper() if value else value

    @property
    def patterns(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


def check(ctx: ReadContext, options: Options) -> None:
    files.check(ctx, files.Options(path=options.path))


class CellError(ValueError):
    """A cell that does not fit its column's declared type."""


# -- canonical text of a cell, by declared type -----------------------------------------------------------
def _clean(text: str) -> str:
    """Full-width digits and signs to ASCII, spaces trimmed, thousands separators dropped."""
    return unicodedata.normalize("NFKC", text).strip().replace(",", "")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.time() != time(0) else value.date().isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _as_integer(value: Any) -> str:
    if isinstance(value, bool):
        raise CellError("is a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise CellError("has a fraction")
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", _clean(value)):
        return str(int(_clean(value)))
    raise CellError("is not a whole number")


def _as_number(value: Any) -> str:
    if isinstance(value, bool):
        raise CellError("is a boolean")
    if isinstance(value, int | float):
        return _as_text(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", _clean(value)):
        return _clean(value)
    raise CellError("is not a number")


def _excel_serial(value: float) -> datetime:
    from openpyxl.utils.datetime import from_excel

    found = from_excel(value)
    if not isinstance(found, datetime):
        raise CellError("is not a date")
    return found


def _parse_datetime(text: str) -> datetime:
    cleaned = unicodedata.normalize("NFKC", text).strip().replace("/", "-").replace(".", "-")
    match = re.fullmatch(r"(\d{4})年(\d{1,2})月(\d{1,2})日", cleaned)
    if match:
        cleaned = "-".join(match.groups())
    parts = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(.*)", cleaned)
    if parts:
        year, month, day, rest = parts.groups()
        cleaned = f"{year}-{int(month):02d}-{int(day):02d}{rest}"
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        raise CellError("is not a date") from None


def _as_date(value: Any) -> str:
    if isinstance(value, datetime):
        if value.time() != time(0):
            raise CellError("has a time of day")
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _excel_serial(float(value)).date().isoformat()
    if isinstance(value, str):
        found = _parse_datetime(value)
        if found.time() != time(0):
            raise CellError("has a time of day")
        return found.date().isoformat()
    raise CellError("is not a date")


def _as_timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return datetime.combine(value, time(0)).isoformat(sep=" ")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _excel_serial(float(value)).isoformat(sep=" ")
    if isinstance(value, str):
        return _parse_datetime(value).isoformat(sep=" ")
    raise CellError("is not a date and time")


TRUE, FALSE = {"true", "yes", "y", "1", "○", "はい", "on"}, {"false", "no", "n", "0", "×", "いいえ", "off"}


def _as_boolean(value: Any) -> str:
    if isinstance(value, bool):
        return _as_text(value)
    text = _clean(str(value)).lower() if isinstance(value, str | int | float) else ""
    if text in TRUE:
        return "true"
    if text in FALSE:
        return "false"
    raise CellError("is not true or false")


def converter(declared: str | None) -> tuple[Callable[[Any], str], str]:
    """(the function that makes a cell's canonical text, the type's name in messages)."""
    if not declared:
        return _as_text, "text"
    base = declared.upper().split("(")[0].strip()
    if base in ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "INT1", "INT2", "INT4", "INT8",
                "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "LONG", "SHORT"):
        return _as_integer, declared
    if base in ("DECIMAL", "NUMERIC", "DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"):
        return _as_number, declared
    if base == "DATE":
        return _as_date, declared
    if base.startswith(("TIMESTAMP", "DATETIME")):
        return _as_timestamp, declared
    if base in ("BOOLEAN", "BOOL", "LOGICAL"):
        return _as_boolean, declared
    return _as_text, declared  # text, and anything the loader should judge itself


# -- reading -----------------------------------------------------------------------------------------------
def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    headers = textfile.Headers(ctx)  # the first workbook's columns: the others are compared with them
    for source in textfile.unlanded(ctx, options.patterns):
        yield from headers.watch(source, read_workbook(ctx, options, source))
        if ctx.cancel.is_set():
            return
        textfile.still_the_same(ctx, source)
        ctx.add_file(source.landed)


def _open(ctx: ReadContext, source: textfile.SourceFile) -> Any:
    from openpyxl import load_workbook

    try:
        return load_workbook(source.path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ctx.error(f"{source.name}: not a readable .xlsx workbook ({exc})",
                        "save it as Excel Workbook (.xlsx); old .xls files are not read") from None


def _sheet(ctx: ReadContext, workbook: Any, options: Options, source: textfile.SourceFile) -> Any:
    names = workbook.sheetnames
    if isinstance(options.sheet, int):
        if not 0 <= options.sheet < len(names):
            raise ctx.error(f"{source.name}: there is no sheet {options.sheet} (sheets, from 0: {', '.join(names)})")
        return workbook[names[options.sheet]]
    if options.sheet not in names:
        trimmed = {name.strip(): name for name in names}
        if options.sheet.strip() in trimmed:
            return workbook[trimmed[options.sheet.strip()]]
        raise ctx.error(f"{source.name}: there is no sheet '{options.sheet}' (sheets: {', '.join(names)})")
    return workbook[options.sheet]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def header_names(cells: tuple[Any, ...], first_col: int, sheet: str, notes: list[str]) -> list[str]:
    """Trimmed names; a blank cell (often the tail of a merged cell) is named after the name before it and
    its column letter, or after its column alone; a repeated name gets its column letter."""
    from openpyxl.utils import get_column_letter

    names: list[str] = []
    previous = None
    for offset, value in enumerate(cells):
        letter = get_column_letter(first_col + offset)
        name = " ".join(_as_text(value).split()) if not _blank(value) else ""
        if not name:
            name = f"{previous}_{letter}" if previous else f"column_{letter}"
            notes.append(f"{sheet}!{letter}: blank header cell, named the column {name}")
        else:
            previous = name
        if name in names:
            renamed = f"{name}_{letter}"
            notes.append(f"{sheet}!{letter}: header '{name}' repeats, named the column {renamed}")
            name = renamed
        names.append(name)
    return names


def cell_notes(source: textfile.SourceFile, title: str) -> list[str]:
    """What the values alone do not show, from the sheet's XML: merged cells (only their first cell holds the
    value; the others land as NULL) and formulas with no saved value (the file was never recalculated and
    saved by Excel: they land as NULL)."""
    import posixpath
    import xml.etree.ElementTree as ET

    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rel = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    try:
        with zipfile.ZipFile(source.path) as archive:
            book = ET.fromstring(archive.read("xl/workbook.xml"))
            rid = next((s.get(rel) for s in book.iter(f"{main}sheet") if s.get("name") == title), None)
            rels = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
            target = next((r.get("Target") for r in rels if r.get("Id") == rid), None)
            if not target:
                return []
            path = target.lstrip("/") if target.startswith("/") else posixpath.join("xl", target)
            merged: list[str] = []
            empty_formulas: list[str] = []
            with archive.open(path) as xml:
                for _, element in ET.iterparse(xml):
                    if element.tag == f"{main}mergeCell":
                        merged.append(element.get("ref", ""))
                    elif element.tag == f"{main}c":
                        value = element.find(f"{main}v")
                        if element.find(f"{main}f") is not None and (value is None or not value.text):
                            empty_formulas.append(element.get("r", ""))
                        element.clear()
    except (KeyError, zipfile.BadZipFile, ET.ParseError, OSError):
        return []  # openpyxl has said (or will say) what is wrong with the file
    notes = []
    if merged:
        notes.append(f"{source.name}: {len(merged)} merged cell range(s) on {title} ({', '.join(merged[:3])}"
                     f"{' …' if len(merged) > 3 else ''}): only the first cell of each holds the value, the "
                     "others land as NULL")
    if empty_formulas:
        notes.append(f"{source.name}: {len(empty_formulas)} formula cell(s) on {title} without a saved value "
                     f"({', '.join(empty_formulas[:3])}{' …' if len(empty_formulas) > 3 else ''}): they land as "
                     "NULL — open and save the workbook in Excel to store the results")
    return notes


def read_workbook(ctx: ReadContext, options: Options, source: textfile.SourceFile) -> Iterator[pa.RecordBatch]:
    from openpyxl.utils import get_column_letter, range_boundaries

    workbook = _open(ctx, source)
    try:
        sheet = _sheet(ctx, workbook, options, source)
        title = sheet.title
        for note in cell_notes(source, title):
            ctx.note(note)
        if options.range:
            min_col, min_row, max_col, max_row = range_boundaries(options.range)
        else:
            min_row, max_row = options.header_row, None
            min_col, max_col = 1, None
        if options.header:
            header_cells = next(sheet.iter_rows(min_row=min_row, max_row=min_row, min_col=min_col,
                                                max_col=max_col, values_only=True), ())
            header_cells = tuple(header_cells)
            if max_col is None:  # the header's extent: up to its last filled cell
                filled = [i for i, value in enumerate(header_cells) if not _blank(value)]
                if not filled:
                    raise ctx.error(f"{source.name}: {title}!{min_row}: the header row is empty",
                                    "set `header_row:` or `range:` (e.g. A3:F200)")
                min_col = 1 + filled[0]
                max_col = 1 + filled[-1]
                header_cells = header_cells[filled[0]: filled[-1] + 1]
            names = header_names(header_cells, min_col, title, ctx.notes)
            if options.column_names:
                if len(options.column_names) != len(names):
                    raise ctx.error(f"{source.name}: column_names has {len(options.column_names)} names, the "
                                    f"header {len(names)} cells ({title}!{get_column_letter(min_col)}{min_row}:"
                                    f"{get_column_letter(max_col)}{min_row})")
                names = list(options.column_names)
            first_data = min_row + 1
        else:
            declared_names = [c.name for c in ctx.table.columns]
            given = options.column_names or declared_names
            if max_col is None:
                max_col = min_col + len(given) - 1 if given else sheet.max_column or 1
            width = max_col - min_col + 1
            names = list(given) if given and len(given) == width else \
                [get_column_letter(min_col + i) for i in range(width)]
            first_data = min_row
        declared = {c.name: c.type for c in ctx.table.columns}
        converters = [converter(declared.get(name)) for name in names]
        letters = [get_column_letter(min_col + i) for i in range(len(names))]
        columns: list[list[str | None]] = [[] for _ in names]
        lines: list[int] = []
        bad: list[BadRow] = []
        for number, cells in enumerate(sheet.iter_rows(min_row=first_data, max_row=max_row, min_col=min_col,
                                                       max_col=max_col, values_only=True), start=first_data):
            if all(_blank(value) for value in cells):
                continue
            values: list[str | None] = []
            problems: list[tuple[int, str]] = []
            for index, value in enumerate(tuple(cells) + (None,) * (len(names) - len(cells))):
                if _blank(value):
                    values.append(None)
                    continue
                convert, type_name = converters[index]
                try:
                    values.append(convert(value))
                except CellError as exc:
                    where = f"{title}!{letters[index]}{number}"
                    problems.append((index, f"{where} (column {names[index]}): {_as_text(value)!r} {exc} "
                                            f"({type_name})"))
                    values.append(None)
            if problems:
                first = problems[0][0]
                raw = "\t".join("" if _blank(v) else _as_text(v) for v in cells)
                bad.append(BadRow(f"{source.name} {title}!{letters[first]}{number}", raw,
                                  "; ".join(p for _, p in problems), column=names[first], file=source.name,
                                  line=number))
                continue
            for target, value in zip(columns, values, strict=True):
                target.append(value)
            lines.append(number)
            if len(lines) >= ctx.batch_rows:
                yield _batch(names, columns, lines, source.name)
                columns, lines = [[] for _ in names], []
            if ctx.cancel.is_set():
                break
        if bad:
            ctx.quarantine(bad)
        if lines:
            yield _batch(names, columns, lines, source.name)
    finally:
        workbook.close()


def _batch(names: list[str], columns: list[list[str | None]], lines: list[int], file: str) -> pa.RecordBatch:
    arrays = [pa.array(values, pa.string()) for values in columns]
    arrays += [pa.array([file] * len(lines), pa.string()), pa.array(lines, pa.int64())]
    return pa.RecordBatch.from_arrays(arrays, names=[*names, SOURCE_FILE, SOURCE_LINE])
