"""Malformed files thrown at the file readers: they never crash (a wholly unreadable file is a SourceError),
and every record is either yielded or quarantined — exactly once, at its own line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from kiban.collect.connector import ReadContext, SourceError, read_batches
from kiban.collect.connectors import textfile
from kiban.collect.spec import SourceSpec

ENCODINGS = ["utf-8", "cp932", "euc_jp"]
# characters every one of the three encodings has, and the ones that make CSV hard
TEXT = st.text(alphabet=st.sampled_from([*"abcXYZ019 -.東京都あアー", ",", '"', "\n", "\t", "'"]), max_size=12)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MAX_FIELD = 40


@contextmanager
def block_size(size: int) -> Iterator[None]:
    saved = textfile.BLOCK_BYTES
    textfile.BLOCK_BYTES = size
    try:
        yield
    finally:
        textfile.BLOCK_BYTES = saved


def run(root: Path, name: str, data: bytes, block: int, **table: Any) -> tuple[list[dict[str, Any]], ReadContext]:
    (root / name).write_bytes(data)
    # settle 0: the file is complete when written (the settle wait has tests of its own, test_collect_landing.py)
    spec = SourceSpec.model_validate({"type": "files", "tables": {"t": {"path": name, "settle": 0, **table}}})
    ctx = ReadContext("fuzz", "t", spec, spec.tables["t"], root, batch_rows=7)
    with block_size(block):
        rows = [r for b in read_batches(ctx) for r in pa.Table.from_batches([b]).to_pylist()]
    return rows, ctx


def csv_line(fields: list[str], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(fields)
    return out.getvalue()[:-1]


def assert_lines_covered_once(rows: list[dict[str, Any]], ctx: ReadContext, text_lines: list[bytes],
                              first_data_line: int) -> None:
    """Every non-blank data line is in exactly one yielded row's or quarantined row's span of lines."""
    covered: list[int] = []
    for row in rows:
        values = [v for k, v in row.items() if not k.startswith("_source") and isinstance(v, str)]
        span = 1 + sum(v.count("\n") for v in values)
        covered += range(row["_source_line"], row["_source_line"] + span)
    for bad in ctx.bad_rows:
        assert bad.line is not None
        assert bad.file is not None
        assert bad.location.startswith(f"{bad.file}:{bad.line}")
        covered += range(bad.line, bad.line + 1 + bad.raw.count("\n"))
    assert len(covered) == len(set(covered)), "a line was read twice"
    nonblank = {i for i, line in enumerate(text_lines, start=1) if i >= first_data_line and line.strip(b"\r")}
    assert nonblank <= set(covered), f"lines lost: {sorted(nonblank - set(covered))}"
    assert set(covered) <= set(range(first_data_line, len(text_lines) + 1))


BAD_LINE = st.one_of(
    st.builds(lambda f: ",".join(f), st.lists(TEXT.filter(lambda s: "\n" not in s and '"' not in s), max_size=6)),
    st.builds(lambda a, b: f'{a},"{b}', TEXT.filter(lambda s: "\n" not in s), TEXT.filter(lambda s: "\n" not in s)),
    st.just("1,2\x003"),
    st.just("x" * (MAX_FIELD + 5) + ",y,z"),
    st.just(""),
    st.just("\r"),
)


@st.composite
def dirty_csv(draw: st.DrawFn) -> tuple[str, bytes]:
    encoding = draw(st.sampled_from(ENCODINGS))
    lines: list[bytes] = [b"a,b,c"]
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["good", "good", "bad", "bytes"]))
        if kind == "good":
            line = csv_line(draw(st.lists(TEXT, min_size=3, max_size=3)))
            lines.append(line.encode(encoding))
        elif kind == "bad":
            lines.append(draw(BAD_LINE).encode(encoding))
        else:  # bytes that are no character in this encoding
            junk = {"utf-8": b"\xff\xc3(", "cp932": b"\x81\x20\xfd", "euc_jp": b"\xa1\x41\x8e"}[encoding]
            lines.append(b"1," + junk + b",3")
    data = b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))
    return encoding, data


@FUZZ
@given(dirty_csv(), st.sampled_from([32, 100, 1 << 20]))
def test_dirty_csv_never_crashes_and_reconciles(tmp_path: Path, case: tuple[str, bytes], block: int) -> None:
    encoding, data = case
    note(f"{encoding} {block} {data!r}")
    rows, ctx = run(tmp_path, "f.csv", data, block, encoding=encoding, max_field_bytes=MAX_FIELD)
    assert_lines_covered_once(rows, ctx, data.split(b"\n"), first_data_line=2)
    for row in rows:
        assert set(row) == {"a", "b", "c", "_source_file", "_source_line"}


@FUZZ
@given(st.sampled_from(ENCODINGS), st.lists(st.lists(TEXT, min_size=3, max_size=3), max_size=30),
       st.sampled_from([16, 64, 1 << 20]), st.sampled_from([",", "\t"]))
# found by CI: a quoted record longer than four blocks was cut inside its quotes (two good lines quarantined)
@example("utf-8", [['00000"あああああ', '00000"あああああ', '0000"\nあああああ']], 16, ",")
def test_clean_csv_round_trips_with_lines(tmp_path: Path, encoding: str, records: list[list[str]], block: int,
                                          delimiter: str) -> None:
    body = "".join(csv_line(r, delimiter) + "\n" for r in records)
    data = (csv_line(["a", "b", "c"], delimiter) + "\n" + body).encode(encoding)
    rows, ctx = run(tmp_path, "f.csv", data, block, encoding=encoding, delimiter=delimiter)
    assert ctx.bad_rows == []
    assert [[row["a"] or "", row["b"] or "", row["c"] or ""] for row in rows] == records
    line = 2
    for record, row in zip(records, rows, strict=False):
        assert row["_source_line"] == line
        line += 1 + sum(v.count("\n") for v in record)


@st.composite
def dirty_jsonl(draw: st.DrawFn) -> tuple[str, bytes]:
    encoding = draw(st.sampled_from(ENCODINGS))
    value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                         max_leaves=6)
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 20))):
        kind = draw(st.sampled_from(["object", "object", "value", "broken", "bytes", "blank", "nul", "huge"]))
        if kind == "object":
            text = json.dumps(draw(st.dictionaries(TEXT, value, max_size=4)), ensure_ascii=False)
        elif kind == "value":
            text = json.dumps(draw(value), ensure_ascii=False)
        elif kind == "broken":
            text = json.dumps({"a": draw(TEXT)}, ensure_ascii=False)[:-1]
        elif kind == "blank":
            text = ""
        elif kind == "nul":
            text = '{"a": "x\x00y"}'
        elif kind == "huge":
            text = json.dumps({"a": "x" * (MAX_FIELD + 1)})
        else:
            lines.append(b'{"a": "' + b"\xff\xfd" + b'"}')
            continue
        lines.append(text.encode(encoding))
    return encoding, b"\n".join(lines) + b"\n"


@FUZZ
@given(dirty_jsonl(), st.sampled_from([32, 1 << 20]))
def test_dirty_jsonl_never_crashes_and_reconciles(tmp_path: Path, case: tuple[str, bytes], block: int) -> None:
    encoding, data = case
    rows, ctx = run(tmp_path, "f.jsonl", data, block, encoding=encoding, max_field_bytes=MAX_FIELD)
    lines = data.split(b"\n")[:-1]
    nonblank = [i for i, line in enumerate(lines, start=1) if line.strip()]
    seen = sorted([r["_source_line"] for r in rows] + [b.line for b in ctx.bad_rows if b.line is not None])
    assert seen == nonblank


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["f.csv", "f.json", "f.jsonl", "f.tsv"]),
       st.sampled_from(["utf-8", "cp932", "euc-jp", "auto"]))
def test_random_bytes_are_rows_quarantine_or_a_source_error(tmp_path: Path, data: bytes, name: str,
                                                            encoding: str) -> None:
    try:
        rows, ctx = run(tmp_path, name, data, 64, encoding=encoding)
    except SourceError as exc:
        assert "f." in str(exc)  # it names the file
        return
    assert len(rows) + len(ctx.bad_rows) <= data.count(b"\n") + 1
    assert [f.path for f in ctx.files] == [name]
