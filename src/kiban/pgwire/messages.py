"""The PostgreSQL v3 protocol's messages (the subset a read-only server needs), and Arrow values as wire values.

Every message from the server is a type byte, an int32 length (itself included) and a body; strings are
NUL-terminated UTF-8. Values travel as text unless a client asks for binary, which is answered for the fixed-size
number types and text; any other type is sent as text (clients that ask for binary results of dates use the
extended protocol with text by default: psql, psycopg, JDBC, ODBC and the BI tools built on them).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608

BOOL, BYTEA, INT8, INT2, INT4, TEXT, FLOAT4, FLOAT8 = 16, 17, 20, 21, 23, 25, 700, 701
DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID, JSON = 1082, 1083, 1114, 1184, 1186, 1700, 2950, 114
VARCHAR, BPCHAR, NAME, UNKNOWN = 1043, 1042, 19, 705
_EPOCH = datetime(2000, 1, 1)  # PostgreSQL's binary dates and times count from here
SIZES = {BOOL: 1, INT2: 2, INT4: 4, INT8: 8, FLOAT4: 4, FLOAT8: 8, DATE: 4, TIMESTAMP: 8, TIMESTAMPTZ: 8}


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def authentication(code: int) -> bytes:
    return message(b"R", struct.pack("!i", code))


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def ready(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def error(code: str, text: str, hint: str | None = None, severity: str = "ERROR") -> bytes:
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(code) + b"M" + cstr(text)
    if hint:
        body += b"H" + cstr(hint)
    return message(b"E", body + b"\0")


def parameter_description(oids: Sequence[int]) -> bytes:
    return message(b"t", struct.pack("!h", len(oids)) + b"".join(struct.pack("!i", o) for o in oids))


def oid_of(kind: pa.DataType) -> int:
    """The PostgreSQL type a column's Arrow type is shown as."""
    if pa.types.is_boolean(kind):
        return BOOL
    if pa.types.is_int8(kind) or pa.types.is_int16(kind) or pa.types.is_uint8(kind):
        return INT2
    if pa.types.is_int32(kind) or pa.types.is_uint16(kind):
        return INT4
    if pa.types.is_int64(kind) or pa.types.is_uint32(kind):
        return INT8
    if pa.types.is_uint64(kind) or pa.types.is_decimal(kind):
        return NUMERIC
    if pa.types.is_float16(kind) or pa.types.is_float32(kind):
        return FLOAT4
    if pa.types.is_float64(kind):
        return FLOAT8
    if pa.types.is_date(kind):
        return DATE
    if pa.types.is_timestamp(kind):
        return TIMESTAMPTZ if kind.tz else TIMESTAMP
    if pa.types.is_time(kind):
        return TIME
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return BYTEA
    return TEXT


def row_description(schema: pa.Schema, formats: Sequence[int] = ()) -> bytes:
    parts = [struct.pack("!h", len(schema))]
    for i, field in enumerate(schema):
        oid = oid_of(field.type)
        binary = _format(formats, i) == 1 and _binary_ok(oid)
        parts.append(cstr(field.name) + struct.pack("!ihihih", 0, 0, oid, SIZES.get(oid, -1), -1, int(binary)))
    return message(b"T", b"".join(parts))


def _format(formats: Sequence[int], i: int) -> int:
    if not formats:
        return 0
    return formats[0] if len(formats) == 1 else formats[i]


def _binary_ok(oid: int) -> bool:
    return oid in (BOOL, INT2, INT4, INT8, FLOAT4, FLOAT8, TEXT, BYTEA, DATE, TIMESTAMP, TIMESTAMPTZ, TIME, NUMERIC)


def _text_column(column: pa.ChunkedArray) -> list[bytes | None]:
    """One column's values as PostgreSQL text (None: NULL)."""
    kind = column.type
    if pa.types.is_boolean(kind):
        return [None if v is None else (b"t" if v else b"f") for v in column.to_pylist()]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return [None if v is None else b"\\x" + v.hex().encode() for v in column.to_pylist()]
    if pa.types.is_timestamp(kind) or pa.types.is_time(kind):
        return [None if v is None else str(v).encode() for v in column.to_pylist()]
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_date(kind)):
        texts = pc.cast(column, pa.string()) if not pa.types.is_string(kind) else column
        return [None if v is None else v.encode() for v in texts.to_pylist()]
    return [None if v is None else _plain(v).encode() for v in column.to_pylist()]


def _plain(value: Any) -> str:
    import json

    if isinstance(value, list | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


_PACK = {INT2: "!h", INT4: "!i", INT8: "!q", FLOAT4: "!f", FLOAT8: "!d"}


def _binary_column(column: pa.ChunkedArray, oid: int) -> list[bytes | None]:
    values = column.to_pylist()
    if oid == BOOL:
        return [None if v is None else (b"\1" if v else b"\0") for v in values]
    if oid in (TEXT, BYTEA):
        return [None if v is None else (v.encode() if isinstance(v, str) else bytes(v)) for v in values]
    if oid == DATE:  # int32 days since 2000-01-01
        days = pc.subtract(pc.cast(column, pa.int32()), pa.scalar(10957, pa.int32())).to_pylist()
        return [None if v is None else struct.pack("!i", v) for v in days]
    if oid in (TIMESTAMP, TIMESTAMPTZ):  # int64 microseconds since 2000-01-01 (UTC for timestamptz)
        micros = pc.cast(pc.cast(column, pa.timestamp("us", column.type.tz)), pa.int64()).to_pylist()
        return [None if v is None else struct.pack("!q", v - 946_684_800_000_000) for v in micros]
    if oid == TIME:  # int64 microseconds since midnight
        micros = pc.cast(pc.cast(column, pa.time64("us")), pa.int64()).to_pylist()
        return [None if v is None else struct.pack("!q", v) for v in micros]
    if oid == NUMERIC:
        return [None if v is None else _numeric_bytes(Decimal(v)) for v in values]
    spec = _PACK[oid]
    return [None if v is None else struct.pack(spec, v) for v in values]


def _numeric_bytes(value: Decimal) -> bytes:
    """A Decimal as PostgreSQL's binary numeric (see :func:`_numeric`)."""
    if value.is_nan():
        return struct.pack("!hhHH", 0, 0, 0xC000, 0)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    scale = max(0, -exponent)
    text = "".join(map(str, digits))
    # pad so that the decimal point falls on a 4-digit boundary
    whole = len(text) + exponent  # digits before the point
    front = (-whole) % 4
    back = (-(len(text) + front)) % 4
    padded = "0" * front + text + "0" * back
    groups = [int(padded[i:i + 4]) for i in range(0, len(padded), 4)]
    weight = (whole + front) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack(f"!hhHH{len(groups)}H", len(groups), weight, 0x4000 if sign else 0, scale, *groups)


ROWS_PER_WRITE = 16384  # DataRow messages built (by Arrow, column by column) and sent in one write


def data_rows(table: pa.Table, formats: Sequence[int] = (), limit: int | None = None) -> Iterator[bytes]:
    """DataRow messages of ``table`` (at most ``limit`` rows), :data:`ROWS_PER_WRITE` rows per yielded chunk.

    Built column by column with Arrow's kernels, no Python loop over rows or cells (except for the types Arrow
    cannot spell as PostgreSQL does: timestamps and times as text, numerics as binary, lists and structs): each
    column becomes a binary array of its values on the wire, each value gets its length (-1: NULL) in front,
    the columns of a row are joined, and each row gets the message's type byte, length and column count."""
    if limit is not None:
        table = table.slice(0, limit)
    kinds = [oid_of(column.type) for column in table.columns]
    for offset in range(0, table.num_rows, ROWS_PER_WRITE):
        # the length clamped here: slice() does not clamp a table of no columns
        part = table.slice(offset, min(ROWS_PER_WRITE, table.num_rows - offset))
        yield _encode(part, [_format(formats, i) == 1 and _binary_ok(kinds[i]) for i in range(len(kinds))], kinds)


def _be(values: Any, size: int) -> pa.Array:
    """A numpy array of big-endian numbers as a binary array of ``size``-byte values (one copy, no loop)."""
    import numpy as np

    raw = np.ascontiguousarray(values)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), len(raw), [None, pa.py_buffer(raw.tobytes())])
    return pc.cast(fixed, pa.binary())


def _encode(part: pa.Table, binary: Sequence[bool], kinds: Sequence[int]) -> bytes:
    import numpy as np

    rows = part.num_rows
    if rows == 0:
        return b""
    pieces: list[pa.Array] = []
    for column, as_binary, oid in zip(part.columns, binary, kinds, strict=True):
        values = _wire_binary(column, oid) if as_binary else _wire_text(column)
        lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy(zero_copy_only=False)
        pieces += [_be(lengths.astype(">i4"), 4), pc.fill_null(values, b"")]
    if pieces:
        body = pc.binary_join_element_wise(*pieces, b"")
        sizes = pc.binary_length(body).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        body, sizes = None, np.zeros(rows, np.int64)
    header = np.empty(rows, dtype=[("kind", "S1"), ("length", ">i4"), ("width", ">i2")])
    header["kind"], header["length"], header["width"] = b"D", sizes + 6, part.num_columns
    messages = _be(header, 7) if body is None else pc.binary_join_element_wise(_be(header, 7), body, b"")
    offsets = messages.buffers()[1]
    first, last = (np.frombuffer(offsets, np.int32, count=rows + 1, offset=4 * messages.offset)[[0, -1]])
    return memoryview(messages.buffers()[2])[first:last].tobytes()


def _wire_text(column: pa.ChunkedArray) -> pa.Array:
    """One column's values as PostgreSQL's text format, as binary (NULL stays NULL)."""
    kind = column.type
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.cast(column, pa.binary())
    if pa.types.is_boolean(kind):
        return pc.cast(pc.if_else(column, "t", "f"), pa.binary())
    if pa.types.is_floating(kind):
        texts = pc.cast(column, pa.string())
        if pc.any(pc.or_(pc.is_nan(column), pc.is_inf(column))).as_py():  # PostgreSQL's spellings
            texts = pc.if_else(pc.is_nan(column), "NaN", texts)
            texts = pc.if_else(pc.equal(column, float("inf")), "Infinity", texts)
            texts = pc.if_else(pc.equal(column, float("-inf")), "-Infinity", texts)
        return pc.cast(texts, pa.binary())
    if pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_date(kind):
        return pc.cast(pc.cast(column, pa.string()), pa.binary())
    if pa.types.is_timestamp(kind) and kind.tz is None and kind.unit in ("s", "ms", "us") and _four_digit_years(column):
        return _timestamp_text(column)
    return pa.array(_text_column(pa.chunked_array([column])), pa.binary())


_YEARS = (datetime(1000, 1, 1), datetime(9999, 12, 31))


def _four_digit_years(column: pa.Array) -> bool:
    low, high = pc.min_max(column).values()
    return low.as_py() is None or (_YEARS[0] <= low.as_py() and high.as_py() <= _YEARS[1])


def _timestamp_text(column: pa.Array) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` (the fraction only when there is one), as Python's str() of the value
    spells it — which PostgreSQL's clients read."""
    micros = pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())
    seconds = pc.floor_temporal(pc.cast(column, pa.timestamp("us")), unit="second")
    whole = pc.cast(pc.cast(seconds, pa.timestamp("s")), pa.string())  # (strftime is 30 times slower)
    fraction = pc.subtract(micros, pc.cast(seconds, pa.int64()))
    digits = pc.utf8_lpad(pc.cast(fraction, pa.string()), 6, "0")
    texts = pc.if_else(pc.not_equal(fraction, 0), pc.binary_join_element_wise(whole, digits, "."), whole)
    return pc.cast(texts, pa.binary())


def _wire_binary(column: pa.ChunkedArray, oid: int) -> pa.Array:
    """One column's values as PostgreSQL's binary format (NULL stays NULL)."""
    import numpy as np

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = column.is_valid()
    spec = {INT2: ">i2", INT4: ">i4", INT8: ">i8", FLOAT4: ">f4", FLOAT8: ">f8"}.get(oid)
    if oid == DATE:  # int32 days since 2000-01-01
        numbers = pc.subtract(pc.cast(column, pa.int32()), pa.scalar(10957, pa.int32()))
        spec = ">i4"
    elif oid in (TIMESTAMP, TIMESTAMPTZ):  # int64 microseconds since 2000-01-01 (UTC for timestamptz)
        micros = pc.cast(pc.cast(column, pa.timestamp("us", column.type.tz)), pa.int64())
        numbers, spec = pc.subtract(micros, pa.scalar(946_684_800_000_000, pa.int64())), ">i8"
    elif oid == TIME:  # int64 microseconds since midnight
        numbers, spec = pc.cast(pc.cast(column, pa.time64("us")), pa.int64()), ">i8"
    elif oid == BOOL:
        numbers, spec = pc.cast(column, pa.uint8()), "u1"
    elif spec is not None:
        numbers = pc.cast(column, {INT2: pa.int16(), INT4: pa.int32(), INT8: pa.int64(), FLOAT4: pa.float32(),
                                   FLOAT8: pa.float64()}[oid])
    elif oid in (TEXT, BYTEA) and not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return pc.cast(pc.cast(column, pa.string()), pa.binary())
    elif oid in (TEXT, BYTEA):
        return pc.cast(column, pa.binary())
    else:
        return pa.array(_binary_column(pa.chunked_array([column]), oid), pa.binary())
    filled = pc.fill_null(numbers, pa.scalar(0, numbers.type)).to_numpy(zero_copy_only=False)
    wire = _be(filled.astype(spec), np.dtype(spec).itemsize)
    return wire if valid.false_count == 0 else pc.if_else(valid, wire, pa.scalar(None, pa.binary()))


def parse_strings(data: bytes, count: int, offset: int = 0) -> tuple[list[str], int]:
    out = []
    for _ in range(count):
        end = data.index(b"\0", offset)
        out.append(data[offset:end].decode("utf-8", "replace"))
        offset = end + 1
    return out, offset


def decode_parameter(raw: bytes | None, fmt: int, oid: int) -> Any:
    """A bound parameter as a Python value (text as str: DuckDB casts it to the type the query needs)."""
    if raw is None:
        return None
    if fmt == 0:
        text = raw.decode("utf-8")
        if oid in (INT2, INT4, INT8):
            return int(text)
        if oid in (FLOAT4, FLOAT8):
            return float(text)
        if oid == BOOL:
            return text.lower() in ("t", "true", "1", "yes", "on")
        return text
    if oid in _PACK and len(raw) == struct.calcsize(_PACK[oid]):
        return struct.unpack(_PACK[oid], raw)[0]
    if oid == BOOL and len(raw) == 1:
        return raw != b"\0"
    if oid in (TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN, JSON, 0):
        return raw.decode("utf-8")
    if oid == BYTEA:
        return bytes(raw)
    if oid == DATE and len(raw) == 4:
        return _EPOCH.date() + timedelta(days=struct.unpack("!i", raw)[0])
    if oid in (TIMESTAMP, TIMESTAMPTZ) and len(raw) == 8:
        moment = _EPOCH + timedelta(microseconds=struct.unpack("!q", raw)[0])
        return moment.replace(tzinfo=UTC) if oid == TIMESTAMPTZ else moment
    if oid == TIME and len(raw) == 8:
        return (_EPOCH + timedelta(microseconds=struct.unpack("!q", raw)[0])).time()
    if oid == NUMERIC and len(raw) >= 8:
        return _numeric(raw)
    if oid == UUID and len(raw) == 16:
        return str(uuid.UUID(bytes=raw))
    raise ValueError(f"binary parameters of type {oid} are not supported; send them as text")


def _numeric(raw: bytes) -> Decimal:
    """PostgreSQL's binary numeric: base-10000 digits, the weight of the first, a sign, the display scale."""
    count, weight, sign, scale = struct.unpack_from("!hhHH", raw)
    if len(raw) != 8 + 2 * count:
        raise ValueError("a binary numeric parameter of an impossible length")
    if sign == 0xC000:
        return Decimal("NaN")
    if sign not in (0, 0x4000):
        raise ValueError("a binary numeric parameter with an unknown sign")
    digits = struct.unpack_from(f"!{count}H", raw, 8)
    if any(d > 9999 for d in digits):
        raise ValueError("a binary numeric parameter with a digit out of range")
    value = Decimal(0)
    for i, digit in enumerate(digits):
        value += Decimal(digit).scaleb(4 * (weight - i))
    value = value.quantize(Decimal(1).scaleb(-scale)) if scale else value.to_integral_value()
    return -value if sign == 0x4000 else value


def pairs(items: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(parameter_status(k, v) for k, v in items)
