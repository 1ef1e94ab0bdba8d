"""One validation for a typed entry and every row of an upload (the page's script checks the same rules as the
person types, from :func:`rules`; the server's check here is the one that counts).

Values arrive as text (a form, a CSV) or typed (xlsx cells, JSON): each is converted to its field's type, then
checked against ``required``, ``allowed``, ``min``/``max``, ``max_length`` and ``pattern``. A row with any problem
is refused whole, with one reason per field, so the person sees everything to fix at once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from kiban.errors import UsageError
from kiban.forms.spec import FieldSpec, Form

MAX_UPLOAD_ROWS = 200_000
_TRUE = {"true", "yes", "y", "1", "on", "t", "はい"}
_FALSE = {"false", "no", "n", "0", "off", "f", "いいえ"}


@dataclass
class Refused:
    row: int  # 1-based data row of the upload (the header is row 0); 1 for a typed entry
    values: dict[str, Any]
    reasons: dict[str, str]


@dataclass
class Checked:
    valid: list[dict[str, Any]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the upload's row number of each valid row
    refused: list[Refused] = field(default_factory=list)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def convert(spec: FieldSpec, value: Any) -> Any:
    """``value`` as the field's type; ValueError with words a person reads."""
    kind = spec.type
    text = value.strip() if isinstance(value, str) else value
    if kind == "text":
        return text if isinstance(text, str) else ("" if text is None else str(text))
    if kind == "integer":
        if isinstance(text, bool):
            raise ValueError("is not a whole number")
        if isinstance(text, float) and text.is_integer():
            return int(text)
        if isinstance(text, int):
            return text
        if isinstance(text, str) and re.fullmatch(r"[+-]?\d{1,18}", text.replace(",", "")):
            return int(text.replace(",", ""))
        raise ValueError("is not a whole number")
    if kind == "number":
        if isinstance(text, int | float) and not isinstance(text, bool):
            return float(text)
        try:
            number = float(str(text).replace(",", ""))
        except ValueError:
            raise ValueError("is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("is not a number")
        return number
    if kind == "date":
        if isinstance(text, datetime):
            return text.date()
        if isinstance(text, date):
            return text
        try:
            return date.fromisoformat(str(text).replace("/", "-"))
        except ValueError:
            raise ValueError("is not a date (YYYY-MM-DD)") from None
    if kind == "datetime":
        if isinstance(text, datetime):
            return text
        try:
            return datetime.fromisoformat(str(text).replace("/", "-"))
        except ValueError:
            raise ValueError("is not a date and time (YYYY-MM-DD HH:MM)") from None
    if isinstance(text, bool):
        return text
    lowered = str(text).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("is not yes or no")


def check_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """The converted value and the reason it is refused (None: fine)."""
    if _blank(value):
        return None, ("is required" if spec.required else None)
    try:
        typed = convert(spec, value)
    except ValueError as exc:
        return None, str(exc)
    if spec.allowed is not None and typed not in spec.allowed and str(typed) not in {str(a) for a in spec.allowed}:
        return None, "must be one of " + ", ".join(str(a) for a in spec.allowed)
    if isinstance(typed, int | float) and not isinstance(typed, bool):
        if spec.min is not None and typed < spec.min:
            return None, f"must be at least {spec.min:g}"
        if spec.max is not None and typed > spec.max:
            return None, f"must be at most {spec.max:g}"
    if isinstance(typed, str):
        if spec.max_length is not None and len(typed) > spec.max_length:
            return None, f"is longer than {spec.max_length} characters"
        if spec.pattern is not None and not re.fullmatch(spec.pattern, typed):
            return None, "is not in the expected form"
    return typed, None


def check_row(form: Form, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A row's typed values and the reasons per field it is refused ({}: valid)."""
    typed: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for spec in form.config.fields:
        value, reason = check_value(spec, values.get(spec.name))
        typed[spec.name] = value
        if reason:
            reasons[spec.name] = reason
    return typed, reasons


def check_rows(form: Form, rows: Iterable[Mapping[str, Any]]) -> Checked:
    out = Checked()
    for number, raw in enumerate(rows, start=1):
        typed, reasons = check_row(form, raw)
        if reasons:
            out.refused.append(Refused(number, {k: raw.get(k) for k in raw}, reasons))
        else:
            out.valid.append(typed)
            out.rows.append(number)
    return out


def read_upload(form: Form, filename: str, data: bytes) -> list[dict[str, Any]]:
    """An uploaded CSV (UTF-8, with or without BOM, or CP932) or xlsx (the first sheet) as rows by field name.

    The header names the fields (by name or label, any case); unknown columns are an error, so nothing a person
    typed is silently dropped."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        header, body = _xlsx(data)
    elif name.endswith((".csv", ".txt")):
        header, body = _csv(data)
    else:
        raise UsageError(f"cannot read '{filename}'", "upload a .csv (UTF-8 or CP932) or .xlsx file")
    by_title = {}
    for spec in form.config.fields:
        by_title[spec.name.lower()] = spec.name
        by_title[spec.title.lower()] = spec.name
    names = []
    for column in header:
        key = str(column or "").strip().lower()
        if key not in by_title:
            raise UsageError(f"the column '{column}' is not a field of the form {form.name}",
                             "name the columns " + ", ".join(s.name for s in form.config.fields))
        names.append(by_title[key])
    if len(body) > MAX_UPLOAD_ROWS:
        raise UsageError(f"the file has {len(body):,} rows; an upload takes at most {MAX_UPLOAD_ROWS:,}",
                         "split it into several files")
    return [dict(zip(names, row, strict=False)) for row in body if any(not _blank(v) for v in row)]


def _csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp932")
        except UnicodeDecodeError:
            raise UsageError("the file is neither UTF-8 nor CP932 (Shift_JIS) text",
                             "save it as CSV UTF-8 from Excel") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise UsageError("the file is empty", "the first line names the columns")
    return rows[0], rows[1:]


def _xlsx(data: bytes) -> tuple[list[str], list[list[Any]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # a broken or foreign file: openpyxl raises many kinds
        raise UsageError(f"the file is not a readable xlsx workbook ({type(exc).__name__})") from None
    try:
        sheet = book.worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()
    if not rows:
        raise UsageError("the sheet is empty", "the first row names the columns")
    header = rows[0]
    while header and header[-1] is None:
        header = header[:-1]
    return [str(h) if h is not None else "" for h in header], [r[:len(header)] for r in rows[1:]]


def rules(form: Form) -> list[dict[str, Any]]:
    """The rules the page's script checks as the person types (the same as :func:`check_value`)."""
    return [{"name": s.name, "type": s.type, "required": s.required,
             "allowed": [str(a) for a in s.allowed] if s.allowed is not None else None,
             "min": s.min, "max": s.max, "max_length": s.max_length, "pattern": s.pattern}
            for s in form.config.fields]
