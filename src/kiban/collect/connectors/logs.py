"""Web server access logs: nginx and Apache combined (and common) format, into typed columns.

``sources/web.yml``::

    type: logs
    tables:
      access:
        path: logs/access.log*        # glob(s); rotated .gz files too
        format: combined              # or common (no referer and user agent)

Columns: remote_addr, remote_user, time (UTC timestamp), method, path, protocol, status, bytes, referer,
user_agent, plus ``_source_file`` and ``_source_line``. A ``-`` is null. A request line that is not
``METHOD PATH PROTOCOL`` (scanners send junk) is kept: method and protocol null, the text in ``path``.
A line that is not in the format is quarantined with its file and line. Parsing is Arrow's (RE2 regular
expressions and strptime on whole blocks), not a Python loop over lines. See docs/connectors/logs.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, field_validator

from kiban.collect.connector import BadRow, ReadContext
from kiban.collect.connectors import files, textfile
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE

COMMON = (r'^(?P<remote_addr>\S+) (?P<ident>\S+) (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] '
          r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-)')
# combined also takes common lines (their referer and user agent are null)
COMBINED = COMMON + r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<user_agent>(?:[^"\\]|\\.)*)")?'
REQUEST = r"^(?P<method>[A-Z]+) (?P<path>\S+)(?: (?P<protocol>[A-Za-z]+/[0-9.]+))?$"
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
SCHEMA = pa.schema([
    ("remote_addr", pa.string()), ("remote_user", pa.string()), ("time", pa.timestamp("us", tz="UTC")),
    ("method", pa.string()), ("path", pa.string()), ("protocol", pa.string()), ("status", pa.int32()),
    ("bytes", pa.int64()), ("referer", pa.string()), ("user_agent", pa.string()),
    (SOURCE_FILE, pa.string()), (SOURCE_LINE, pa.int64()),
])


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | list[str]
    format: Literal["combined", "common"] = "combined"
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        return textfile.codec(value)

    @property
    def patterns(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


def check(ctx: ReadContext, options: Options) -> None:
    files.check(ctx, files.Options(path=options.path))


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    pattern = (COMBINED if options.format == "combined" else COMMON) + r"\s*$"
    for source in textfile.unlanded(ctx, options.patterns):
        yield from textfile.guarded(ctx, source, read_one(ctx, options, source, pattern))
        if ctx.cancel.is_set():
            return
        textfile.still_the_same(ctx, source)
        ctx.add_file(source.landed)


def read_one(ctx: ReadContext, options: Options, source: textfile.SourceFile,
             pattern: str) -> Iterator[pa.RecordBatch]:
    encoding = textfile.resolve_encoding(ctx, source, options.encoding)
    line = 1
    with textfile.open_binary(source.path) as handle:
        for block, count in textfile.blocks(handle):
            table, bad = parse_block(block, line, encoding, pattern, source.name)
            if bad:
                ctx.quarantine(bad)
            if table.num_rows:
                yield from table.to_batches(max_chunksize=ctx.batch_rows)
            line += count
            if ctx.cancel.is_set():
                return


def _null_dash(array: pa.Array) -> pa.Array:
    return pc.if_else(pc.or_(pc.equal(array, "-"), pc.equal(array, "")), pa.scalar(None, pa.string()), array)


def _unescape(array: pa.Array) -> pa.Array:
    """Apache writes ``\\"`` and nginx ``\\x22`` for a quote inside a quoted field."""
    return pc.replace_substring(pc.replace_substring(array, '\\"', '"'), "\\x22", '"')


def _lines(block: bytes, encoding: str, file: str, first_line: int) -> tuple[list[str], list[int], list[BadRow]]:
    """The block's non-blank lines as text with their numbers; lines that do not decode are bad rows."""
    try:
        text = textfile.decode(block, encoding)
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        lines = text.split("\n")[:-1]  # a trailing \r is left to the pattern's final \s*
        numbers = list(range(first_line, first_line + len(lines)))
        if "" in lines or "\r" in lines:  # blank lines are no requests (checked in C, filtered rarely)
            kept = [(s, n) for s, n in zip(lines, numbers, strict=True) if s.strip("\r")]
            lines, numbers = [s for s, _ in kept], [n for _, n in kept]
        return lines, numbers, []
    lines, numbers, bad = [], [], []
    for offset, raw in enumerate(block.split(b"\n")[:-1]):
        number = first_line + offset
        try:
            decoded = textfile.decode(raw, encoding)
        except UnicodeDecodeError as exc:
            shown = raw.decode(encoding, errors="backslashreplace")
            bad.append(BadRow(f"{file}:{number}", shown, f"invalid {encoding} bytes at byte {exc.start + 1}",
                              file=file, line=number))
            continue
        if "\x00" in decoded:
            bad.append(BadRow(f"{file}:{number}", decoded.replace("\x00", "\\x00"), "NUL byte in the line",
                              file=file, line=number))
            continue
        if decoded.strip():
            lines.append(decoded.rstrip("\r"))
            numbers.append(number)
    return lines, numbers, bad


def parse_block(block: bytes, first_line: int, encoding: str, pattern: str,
                file: str) -> tuple[pa.Table, list[BadRow]]:
    """The log lines of one block as typed rows, and the lines that are not in the format."""
    lines, numbers, bad = _lines(block, encoding, file, first_line)
    if not lines:
        return SCHEMA.empty_table(), bad
    text = pa.array(lines, pa.string())
    line_numbers = np.asarray(numbers, dtype=np.int64)
    parts = pc.extract_regex(text, pattern)
    times = pc.strptime(pc.struct_field(parts, "time"), format=TIME_FORMAT, unit="s", error_is_null=True)
    ok = pc.and_(pc.is_valid(parts), pc.is_valid(times))
    ok_np = ok.to_numpy(zero_copy_only=False)
    if not ok_np.all():
        matched = pc.is_valid(parts).to_numpy(zero_copy_only=False)
        for index in np.flatnonzero(~ok_np):
            number = int(line_numbers[index])
            reason = (f"not a {'combined' if 'referer' in pattern else 'common'} log line" if not matched[index]
                      else "time is not like 10/Oct/2000:13:55:36 -0700")
            bad.append(BadRow(f"{file}:{number}", lines[index].rstrip("\r"), reason, file=file, line=number))
        parts, times = parts.filter(ok), times.filter(ok)
        line_numbers = line_numbers[ok_np]
    n = len(parts)
    request = _unescape(pc.struct_field(parts, "request"))
    split = pc.extract_regex(request, REQUEST)
    split_ok = pc.is_valid(split)
    method = pc.if_else(split_ok, pc.struct_field(split, "method"), pa.scalar(None, pa.string()))
    path = pc.if_else(split_ok, pc.struct_field(split, "path"), _null_dash(request))
    protocol = pc.if_else(split_ok, _null_dash(pc.struct_field(split, "protocol")), pa.scalar(None, pa.string()))
    names = parts.type.names if hasattr(parts.type, "names") else [f.name for f in parts.type]
    if "referer" in names:
        referer = _null_dash(_unescape(pc.struct_field(parts, "referer")))
        agent = _null_dash(_unescape(pc.struct_field(parts, "user_agent")))
    else:
        referer = agent = pa.nulls(n, pa.string())
    arrays = [
        pc.struct_field(parts, "remote_addr"), _null_dash(pc.struct_field(parts, "remote_user")),
        times.cast(pa.timestamp("us", tz="UTC")), method, path, protocol,
        pc.struct_field(parts, "status").cast(pa.int32()),
        _null_dash(pc.struct_field(parts, "bytes")).cast(pa.int64()),
        referer, agent, pa.array([file] * n, pa.string()), pa.array(line_numbers, pa.int64()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA), bad
