"""CSV and TSV: blocks of whole lines parsed by Arrow, with an exact line number for every row.

The happy path has no per-row Python: a block is decoded (CP932 transcoded to UTF-8 by iconv without the
GIL, see transcoding.py; EUC-JP by Python's codec), parsed by ``pyarrow.csv`` with every column as text (the
loader casts the declared types) and its line numbers are computed with NumPy from the positions of its
newlines. Any trouble in a block — a ragged row, broken quoting, bytes that are not in the encoding, a NUL
byte, a field over the size limit — sends that block alone down the careful path, which parses line by line
and quarantines each bad record with its file, line, raw text and reason. Rows read plus rows quarantined
always equal the records in the file; blank lines are not records.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kiban.collect.connector import BadRow, ReadContext
from kiban.collect.connectors import textfile, transcoding
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE

# the csv module refuses fields over 128 KB with an error that hides which limit it was; kiban applies its
# own, per table (max_field_bytes), so the module's is lifted
csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))
JOIN_LIMIT = 200  # lines a quoted value may span on the careful path before its opening line is refused


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    quote: str | None
    header: bool
    column_names: tuple[str, ...] | None
    skip_rows: int
    null_values: tuple[str, ...]
    encoding: str  # a Python codec (not auto)
    max_field_bytes: int


@dataclass
class Parsed:
    """One block's outcome."""

    table: pa.Table | None
    bad: list[BadRow]


def _split_fields(line: str, dialect: Dialect) -> list[str]:
    reader = csv.reader([line], delimiter=dialect.delimiter, quotechar=dialect.quote or '"',
                        quoting=csv.QUOTE_MINIMAL if dialect.quote else csv.QUOTE_NONE, strict=False)
    try:
        return next(reader, [])
    except csv.Error:
        return []


def header_names(fields: list[str], file: str, notes: list[str]) -> list[str]:
    """Column names from a header: trimmed, blanks named after their position, duplicates numbered."""
    names: list[str] = []
    for index, raw in enumerate(fields, start=1):
        name = " ".join(raw.replace("\ufeff", "").split())
        if not name:
            name = f"column_{index}"
            notes.append(f"{file}: header field {index} is blank, named it {name}")
        if name in names:
            numbered = f"{name}_{index}"
            notes.append(f"{file}: header name '{name}' repeats in field {index}, named it {numbered}")
            name = numbered
        names.append(name)
    return names


class BlockParser:
    """Parses the blocks of one file; ``names`` are its columns, ``file`` its name in messages."""

    def __init__(self, dialect: Dialect, names: list[str], file: str) -> None:
        self.dialect, self.names, self.file = dialect, names, file
        self.schema = pa.schema([*(pa.field(n, pa.string()) for n in names),
                                 pa.field(SOURCE_FILE, pa.string()), pa.field(SOURCE_LINE, pa.int64())])
        # no invalid-row handler: it halves Arrow's speed, and any invalid row sends the block down the
        # careful path anyway (Arrow raises, the careful path finds and quarantines the row)
        self.parse_options = pacsv.ParseOptions(delimiter=dialect.delimiter, quote_char=dialect.quote or False)
        self.convert_options = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), null_values=list(dialect.null_values),
            strings_can_be_null=True, quoted_strings_can_be_null=True, check_utf8=False)

    # -- the fast path ----------------------------------------------------------------------------------
    def parse(self, block: bytes, first_line: int, newlines: int | None = None) -> Parsed:
        """A block of whole lines, its first line being line ``first_line`` of the file (``newlines``: how many
        it has, when the caller counted them already)."""
        fast = self._fast(block, first_line, block.count(b"\n") if newlines is None else newlines)
        return fast if fast is not None else self._careful(block, first_line)

    def _fast(self, block: bytes, first_line: int, newlines: int) -> Parsed | None:
        encoding = self.dialect.encoding
        if block.find(b"\x00") >= 0:  # 0x00 is never part of a multi-byte character: a NUL in the data
            return None
        if encoding.startswith("utf-8"):
            try:
                text = block.decode("utf-8")  # validation only: Arrow parses the bytes as they are
            except UnicodeDecodeError:
                return None
            utf8 = block[3:] if block.startswith(b"\xef\xbb\xbf") else block  # a BOM (header: false)
            del text
        else:
            transcoded = transcoding.to_utf8(block, encoding)  # in C, without the GIL, where iconv agrees
            if transcoded is None:
                try:
                    transcoded = textfile.decode(block, encoding).encode("utf-8")
                except UnicodeDecodeError:
                    return None
            utf8 = transcoded
        try:
            table = pacsv.read_csv(
                io.BytesIO(utf8),
                read_options=pacsv.ReadOptions(column_names=self.names, use_threads=False,
                                               block_size=max(len(utf8) + 1, 1 << 20)),
                parse_options=self.parse_options, convert_options=self.convert_options)
        except (pa.ArrowInvalid, pa.ArrowException):
            return None  # a ragged row or broken quoting somewhere in the block
        for column in table.columns:
            if len(column) and (pc.max(pc.binary_length(column)).as_py() or 0) > self.dialect.max_field_bytes:
                return None
        # 0x0A is never inside a character of UTF-8, CP932 or EUC-JP: the newlines of the block are utf8's
        if newlines == table.num_rows and not _open_at_end(table):  # no blank lines or multi-line values
            lines = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
        else:
            found = _row_lines(np.frombuffer(utf8, dtype=np.uint8), table, first_line)
            if found is None:
                return None
            lines = found
        files = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(table), dtype=np.int32)),
                                               pa.array([self.file])).cast(pa.string())
        table = table.append_column(self.schema.field(SOURCE_FILE), files)
        table = table.append_column(self.schema.field(SOURCE_LINE), pa.array(lines, pa.int64()))
        return Parsed(table, [])

    # -- the careful path -------------------------------------------------------------------------------
    def _careful(self, block: bytes, first_line: int) -> Parsed:
        d = self.dialect
        raw_lines = block.split(b"\n")[:-1]  # the block ends with a newline
        columns: list[list[str | None]] = [[] for _ in self.names]
        lines: list[int] = []
        bad: list[BadRow] = []
        nulls = set(d.null_values)
        quote = d.quote
        index = 0
        while index < len(raw_lines):
            number = first_line + index
            raw = raw_lines[index]
            text, problem = self._decode(raw)
            if problem is None and not text.strip("\r"):
                index += 1  # a blank line is not a record
                continue
            if problem is not None:
                bad.append(self._bad(number, text, problem))
                index += 1
                continue
            span = 1
            record = text.rstrip("\r")
            if quote and record.count(quote) % 2 == 1:  # a quoted value goes on: join the following lines
                joined, span = self._join(raw_lines, index, record, quote)
                if joined is None:
                    bad.append(self._bad(number, text, f"unterminated quote ({quote}) on this line"))
                    index += 1
                    continue
                record = joined
            fields = _split_fields(record, d)
            if sum(f.count("\n") for f in fields) > record.count("\n"):
                # Python's csv module ends a quote left open at the end of the record with a newline:
                # the quote parity guessed wrong (a stray quote inside an unquoted field), the record is broken
                bad.append(self._bad(number, text, f"unterminated quote ({quote}) on this line"))
                index += 1
                continue
            if len(fields) != len(self.names):
                if span > 1:  # the join was a guess: refuse the opening line only, parse the rest on its own
                    bad.append(self._bad(number, text, f"unterminated quote ({quote}) on this line"))
                    index += 1
                    continue
                bad.append(self._bad(number, record, f"ragged row: {len(fields)} fields, expected {len(self.names)}"))
                index += 1
                continue
            too_long = next((i for i, f in enumerate(fields) if len(f.encode("utf-8")) > d.max_field_bytes), None)
            if too_long is not None:
                bad.append(self._bad(number, record, f"column {self.names[too_long]}: field of "
                                     f"{len(fields[too_long].encode('utf-8'))} bytes is over the limit of "
                                     f"{d.max_field_bytes} (max_field_bytes)", column=self.names[too_long]))
                index += span
                continue
            for target, value in zip(columns, fields, strict=True):
                target.append(None if value in nulls else value)
            lines.append(number)
            index += span
        if not lines:
            return Parsed(None, bad)
        arrays = [pa.array(values, pa.string()) for values in columns]
        arrays += [pa.array([self.file] * len(lines), pa.string()), pa.array(lines, pa.int64())]
        return Parsed(pa.Table.from_arrays(arrays, schema=self.schema), bad)

    def _decode(self, raw: bytes) -> tuple[str, str | None]:
        """(the line as text, why it cannot be read or None)."""
        try:
            text = textfile.decode(raw, self.dialect.encoding)
        except UnicodeDecodeError as exc:
            shown = raw.decode(self.dialect.encoding, errors="backslashreplace")
            return shown, f"invalid {self.dialect.encoding} bytes at byte {exc.start + 1} of the line"
        text = text.lstrip("\ufeff")
        if "\x00" in text:
            return text.replace("\x00", "\\x00"), f"NUL byte at character {text.index(chr(0)) + 1} of the line"
        return text, None

    def _join(self, raw_lines: list[bytes], index: int, record: str, quote: str) -> tuple[str | None, int]:
        """The record that starts at ``index`` and closes its quote on a later line, and its span."""
        parts = [record]
        count = record.count(quote)
        for offset in range(1, JOIN_LIMIT):
            if index + offset >= len(raw_lines):
                return None, 1
            text, problem = self._decode(raw_lines[index + offset])
            if problem is not None:
                return None, 1
            text = text.rstrip("\r")
            parts.append(text)
            count += text.count(quote)
            if count % 2 == 0:
                return "\n".join(parts), offset + 1
        return None, 1

    def _bad(self, line: int, raw: str, reason: str, column: str | None = None) -> BadRow:
        return BadRow(f"{self.file}:{line}", raw.rstrip("\r"), reason, column=column, file=self.file, line=line)


def _open_at_end(table: pa.Table) -> bool:
    """Whether the last row swallowed the block's final newline: a quote left open at the end, which Arrow
    closes at the end of its input (with as many rows as newlines, no other row can hold a newline)."""
    if not table.num_rows:
        return False
    last = table.slice(table.num_rows - 1)
    return any("\n" in (column[0].as_py() or "") for column in last.columns)


def _row_lines(data: np.ndarray, table: pa.Table, first_line: int) -> np.ndarray | None:
    """The file line each parsed row starts on, from the block's newlines; None if they do not add up.

    Arrow skips blank lines and lets a quoted value span lines; every other line starts a row."""
    newlines = np.flatnonzero(data == 10)
    starts = np.empty_like(newlines)
    starts[0:1] = 0
    starts[1:] = newlines[:-1] + 1
    lengths = newlines - starts
    blank = (lengths == 0) | ((lengths == 1) & (data[np.minimum(starts, len(data) - 1)] == 13))
    filled = np.flatnonzero(~blank)
    rows = table.num_rows
    extra = None
    for column in table.columns:
        if len(column) and pc.any(pc.match_substring(column, "\n")).as_py():
            counts = pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy(zero_copy_only=False)
            extra = counts if extra is None else extra + counts
    if extra is None:
        if len(filled) != rows:
            return None
        return filled + first_line
    spans = extra + 1
    if int(spans.sum()) != len(filled):
        return None
    offsets = np.concatenate(([0], np.cumsum(spans)[:-1]))
    return filled[offsets] + first_line


def read_file(ctx: ReadContext, source: textfile.SourceFile, dialect: Dialect) -> Iterator[pa.RecordBatch]:
    """The rows of one CSV/TSV file, in batches of at most ``ctx.batch_rows``; bad records quarantined."""
    with textfile.open_binary(source.path) as handle:
        quote = dialect.quote.encode("ascii") if dialect.quote else None
        chunks = textfile.blocks(handle, quote, max_line_bytes=max(dialect.max_field_bytes * 64, 16 << 20))
        line = 1
        names, line, pending = _head(ctx, source, dialect, chunks)
        if names is None:
            return
        parser = BlockParser(dialect, names, source.name)
        emitted = 0
        # two threads: while one block is parsed by Arrow (no GIL) the next one is decoded
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kiban-csv") as pool:
            queue: list[Future[Parsed]] = []
            for block, count in _with_pending(pending, chunks):
                if ctx.cancel.is_set():
                    break
                queue.append(pool.submit(parser.parse, block, line, count))
                line += count
                if len(queue) >= 3:
                    for batch in _emit(ctx, queue.pop(0).result()):
                        emitted += batch.num_rows
                        yield batch
            for future in queue:
                for batch in _emit(ctx, future.result()):
                    emitted += batch.num_rows
                    yield batch
        if not emitted:  # a header and no rows: an empty batch still says which columns the file has
            yield pa.RecordBatch.from_pylist([], schema=parser.schema)


def _with_pending(pending: list[tuple[bytes, int]], chunks: Iterator[tuple[bytes, int]]
                  ) -> Iterator[tuple[bytes, int]]:
    yield from pending
    yield from chunks


def _emit(ctx: ReadContext, parsed: Parsed) -> Iterator[pa.RecordBatch]:
    if parsed.bad:
        ctx.quarantine(parsed.bad)
    if parsed.table is not None and parsed.table.num_rows:
        yield from parsed.table.to_batches(max_chunksize=ctx.batch_rows)


def _head(ctx: ReadContext, source: textfile.SourceFile, dialect: Dialect,
          chunks: Iterator[tuple[bytes, int]]) -> tuple[list[str] | None, int, list[tuple[bytes, int]]]:
    """Skip ``skip_rows`` lines and read the header: (column names, the next line's number, the rest of
    the first block to parse). Names come from the header, ``column_names`` or the declared columns."""
    first = next(chunks, None)
    if first is None:
        return None, 1, []
    block, _ = first
    # the lines before the data may outlast the first block (a long preamble, tiny blocks): take more
    while block.count(b"\n") <= dialect.skip_rows + 1 and (extra := next(chunks, None)) is not None:
        block += extra[0]
    position, line = 0, 1
    for _ in range(dialect.skip_rows):
        newline = block.find(b"\n", position)
        if newline < 0:
            return None, line, []
        position, line = newline + 1, line + 1
    names: list[str] | None = list(dialect.column_names) if dialect.column_names else None
    if dialect.header:
        # the header is the first non-blank line after the skipped ones
        while True:
            newline = block.find(b"\n", position)
            while newline < 0 and (extra := next(chunks, None)) is not None:
                block += extra[0]
                newline = block.find(b"\n", position)
            if newline < 0:
                return None, line, []
            raw = block[position:newline]
            position, line = newline + 1, line + 1
            if raw.strip(b"\r \t"):
                break
        try:
            text = textfile.decode(raw, dialect.encoding).lstrip("\ufeff").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise ctx.error(f"{source.name}:{line - 1}: the header is not {dialect.encoding} (byte {exc.start + 1})",
                            "set `encoding:` (cp932, euc-jp …) or `encoding: auto`") from None
        if "\x00" in text:
            raise ctx.error(f"{source.name}:{line - 1}: the header has a NUL byte; is this a text file?")
        header = header_names(_split_fields(text, dialect), source.name, ctx.notes)
        if names is None:
            names = header
        elif len(names) != len(header):
            raise ctx.error(f"{source.name}: column_names has {len(names)} names, the header {len(header)} fields")
    if names is None:
        declared = [column.name for column in ctx.table.columns]
        sample = _first_record(block[position:], dialect)
        width = len(sample) if sample is not None else len(declared)
        names = declared if declared and len(declared) == width else [f"column_{i}" for i in range(1, width + 1)]
        if not names:
            return None, line, []
    rest = block[position:]
    return names, line, [(rest, rest.count(b"\n"))] if rest else []


def _first_record(block: bytes, dialect: Dialect) -> list[str] | None:
    for raw in block.split(b"\n"):
        try:
            text = textfile.decode(raw, dialect.encoding).lstrip("\ufeff").rstrip("\r")
        except UnicodeDecodeError:
            continue
        if text.strip():
            return _split_fields(text, dialect)
    return None
