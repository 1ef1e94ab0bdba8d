"""Files in a folder: CSV, TSV, JSON Lines, JSON and Parquet, plain or gzip, in Japanese encodings too.

``sources/shop_files.yml``::

    type: files
    tables:
      orders:
        path: landing/orders/*.csv.gz    # glob(s), relative to the project root
        encoding: cp932                  # utf-8 (default), utf-8-sig, cp932/shift_jis, euc-jp, auto
        delimiter: ","
        header: true

Every matched file is landed once (by path, size and SHA-256): a landing folder can be collected again
and again, and only new files are read. Rows carry ``_source_file`` and ``_source_line``. Text formats
come out as text columns; the loader casts them to the declared types. See docs/connectors/files.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kiban.collect.connector import BadRow, ReadContext
from kiban.collect.connectors import delimited, textfile
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
Format = Literal["csv", "tsv", "jsonl", "json", "parquet"]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | list[str]
    format: Format | None = None  # by default from the file's suffix (.csv, .tsv, .jsonl, .json, .parquet)
    encoding: str = "utf-8"
    delimiter: str | None = None  # csv: ",", tsv: tab
    quote: str | None = '"'  # null: no quoting at all
    header: bool = True
    column_names: list[str] | None = None  # names for header: false (or to rename a header's columns)
    skip_rows: int = Field(default=0, ge=0)  # lines before the header (titles, notes)
    null_values: list[str] = Field(default_factory=lambda: [""])
    record_path: str | None = None  # json: where the array of records is, e.g. data.items
    max_field_bytes: int = Field(default=1 << 20, ge=1)  # a longer field quarantines its row

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        return textfile.codec(value)

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"'{value}' must be a single character")
        if value is not None and value in "\r\n":
            raise ValueError("a line break cannot be a delimiter or a quote")
        return value

    @property
    def patterns(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


def check(ctx: ReadContext, options: Options) -> None:
    """The folder of each glob must exist (an empty landing folder is fine, a mistyped one is not)."""
    for pattern in options.patterns:
        prefix = re.split(r"[*?\[]", pattern)[0]
        folder = Path(prefix).parent if prefix == pattern else Path(prefix[: prefix.rfind("/") + 1] or ".")
        full = folder if folder.is_absolute() else ctx.project_root / folder
        if not full.exists():
            raise ctx.error(f"path {pattern}: folder {folder.as_posix() or '.'} does not exist",
                            "paths are relative to the project root")


def file_format(ctx: ReadContext, options: Options, source: textfile.SourceFile) -> str:
    if options.format:
        return options.format
    suffix = textfile.plain_suffix(source.path)
    if suffix not in FORMATS:
        raise ctx.error(f"{source.name}: cannot tell the format from '{suffix or 'no suffix'}'",
                        "set `format:` to csv, tsv, jsonl, json or parquet")
    return FORMATS[suffix]


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    headers = textfile.Headers(ctx)  # the first file's columns: the others are compared with them
    for source in textfile.unlanded(ctx, options.patterns):
        yield from headers.watch(source, textfile.guarded(ctx, source, read_one(ctx, options, source)))
        if ctx.cancel.is_set():
            return
        textfile.still_the_same(ctx, source)
        ctx.add_file(source.landed)


def read_one(ctx: ReadContext, options: Options, source: textfile.SourceFile) -> Iterator[pa.RecordBatch]:
    kind = file_format(ctx, options, source)
    if kind == "parquet":
        yield from read_parquet(ctx, source)
        return
    encoding = textfile.resolve_encoding(ctx, source, options.encoding)
    if kind in ("csv", "tsv"):
        yield from delimited.read_file(ctx, source, dialect(options, kind, encoding))
    elif kind == "jsonl":
        yield from read_jsonl(ctx, source, encoding, options.max_field_bytes)
    else:
        yield from read_json(ctx, source, encoding, options.record_path)


def dialect(options: Options, kind: str, encoding: str) -> delimited.Dialect:
    return delimited.Dialect(
        delimiter=options.delimiter or ("\t" if kind == "tsv" else ","), quote=options.quote,
        header=options.header, column_names=tuple(options.column_names) if options.column_names else None,
        skip_rows=options.skip_rows, null_values=tuple(options.null_values), encoding=encoding,
        max_field_bytes=options.max_field_bytes)


# -- Parquet ----------------------------------------------------------------------------------------------
def read_parquet(ctx: ReadContext, source: textfile.SourceFile) -> Iterator[pa.RecordBatch]:
    """Parquet keeps its own types; ``_source_line`` is the row number in the file."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(source.path)
    except (pa.ArrowException, OSError) as exc:
        raise ctx.error(f"{source.name}: not a readable Parquet file ({exc})") from None
    row = 1
    with handle:
        try:
            for batch in handle.iter_batches(batch_size=ctx.batch_rows):
                n = batch.num_rows
                yield pa.RecordBatch.from_arrays(
                    [*batch.columns, pa.array([source.name] * n, pa.string()),
                     pa.array(range(row, row + n), pa.int64())],
                    names=[*batch.schema.names, SOURCE_FILE, SOURCE_LINE])
                row += n
        except (pa.ArrowException, OSError) as exc:
            raise ctx.error(f"{source.name}: Parquet data is damaged after row {row - 1} ({exc})") from None


# -- JSON -------------------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    """A JSON value as text: strings as they are, everything else as its JSON (the loader casts)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class _Records:
    """Rows being gathered into a batch: columns in order of first appearance, missing keys null."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.columns: dict[str, list[str | None]] = {}
        self.lines: list[int] = []

    def add(self, record: dict[str, Any], line: int) -> None:
        n = len(self.lines)
        for key, value in record.items():
            column = self.columns.get(key)
            if column is None:
                column = self.columns[key] = [None] * n
            column.append(_text(value))
        for column in self.columns.values():
            if len(column) == n:
                column.append(None)
        self.lines.append(line)

    def batch(self) -> pa.RecordBatch:
        n = len(self.lines)
        arrays = [pa.array(values, pa.string()) for values in self.columns.values()]
        arrays += [pa.array([self.file] * n, pa.string()), pa.array(self.lines, pa.int64())]
        batch = pa.RecordBatch.from_arrays(arrays, names=[*self.columns, SOURCE_FILE, SOURCE_LINE])
        self.columns, self.lines = {}, []
        return batch


def _check_record(value: Any, max_field_bytes: int) -> str | None:
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__ if value is not None else 'null'}, not an object"
    for key, field in value.items():
        if key in (SOURCE_FILE, SOURCE_LINE):
            return f"key {key} is reserved: kiban adds it to every landed row"
        text = _text(field)
        if text is not None and len(text) > max_field_bytes:
            return f"key {key}: value of {len(text)} characters is over the limit of {max_field_bytes}"
    return None


def read_jsonl(ctx: ReadContext, source: textfile.SourceFile, encoding: str,
               max_field_bytes: int) -> Iterator[pa.RecordBatch]:
    """One JSON object per line; a line that is not one is quarantined."""
    records = _Records(source.name)
    line = 1
    with textfile.open_binary(source.path) as handle:
        for block, count in textfile.blocks(handle, max_line_bytes=max(max_field_bytes * 64, 16 << 20)):
            bad: list[BadRow] = []
            for offset, raw in enumerate(block.split(b"\n")[:-1]):
                number = line + offset
                try:
                    text = textfile.decode(raw, encoding).lstrip("\ufeff")
                except UnicodeDecodeError as exc:
                    shown = raw.decode(encoding, errors="backslashreplace")
                    bad.append(_bad(source, number, shown, f"invalid {encoding} bytes at byte {exc.start + 1}"))
                    continue
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError) as exc:
                    bad.append(_bad(source, number, text, f"not valid JSON: {str(exc)[:200]}"))
                    continue
                problem = _check_record(value, max_field_bytes)
                if problem:
                    bad.append(_bad(source, number, text, problem))
                    continue
                records.add(value, number)
                if len(records.lines) >= ctx.batch_rows:
                    yield records.batch()
            line += count
            if bad:
                ctx.quarantine(bad)
            if ctx.cancel.is_set():
                return
    if records.lines:
        yield records.batch()


def read_json(ctx: ReadContext, source: textfile.SourceFile, encoding: str,
              record_path: str | None) -> Iterator[pa.RecordBatch]:
    """A JSON document holding an array of objects (at ``record_path``); ``_source_line`` is the record's
    number. The document is read whole: for big data, prefer JSON Lines."""
    with textfile.open_binary(source.path) as handle:
        raw = handle.read()
    try:
        text = textfile.decode(raw, encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        shown = raw.decode(encoding, errors="backslashreplace")
        ctx.quarantine([_bad(source, line, shown, f"invalid {encoding} bytes at byte {exc.start + 1} of the file")])
        return
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.quarantine([_bad(source, exc.lineno, text, f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                                        f"column {exc.colno}; the whole file is quarantined")])
        return
    except (ValueError, RecursionError) as exc:
        ctx.quarantine([_bad(source, 1, text, f"not valid JSON: {str(exc)[:200]}")])
        return
    found: Any = document
    for step in (record_path.split(".") if record_path else []):
        found = found.get(step) if isinstance(found, dict) else None
    if isinstance(found, dict) and not record_path:
        found = [found]  # a single object is one record
    if not isinstance(found, list):
        where = f"at record_path {record_path}" if record_path else "at the top"
        raise ctx.error(f"{source.name}: no array of records {where}", "set `record_path:` (e.g. data.items)")
    records = _Records(source.name)
    bad: list[BadRow] = []
    for number, value in enumerate(found, start=1):
        problem = _check_record(value, 1 << 62)
        if problem:
            bad.append(BadRow(f"{source.name} record {number}", json.dumps(value, ensure_ascii=False), problem,
                              file=source.name, line=number))
            continue
        records.add(value, number)
        if len(records.lines) >= ctx.batch_rows:
            yield records.batch()
    if bad:
        ctx.quarantine(bad)
    if records.lines:
        yield records.batch()


def _bad(source: textfile.SourceFile, line: int, raw: str, reason: str) -> BadRow:
    return BadRow(f"{source.name}:{line}", raw.rstrip("\r"), reason, file=source.name, line=line)
