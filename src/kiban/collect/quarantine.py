"""The quarantine: rows a load refused, read back for people (list, show, export) and replayed once fixed.

Every quarantined row is in ``lake/_quarantine/SOURCE/TABLE/LOAD_ID.parquet`` with its location, raw text,
column and reason. A row the loader refused for its declared types keeps its raw values as JSON, so
``replay`` can cast it again after the declaration (or the source's options) were fixed: rows that pass
land in a new load of kind ``replay`` and are marked replayed; the rest stay quarantined. Rows a connector
could not parse at all (a ragged CSV line) have no values to cast again: deliver the fixed file again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kiban.collect import sessions
from kiban.collect.casting import Declared, cast_batch, decimal_scale
from kiban.collect.load import LoadResult, Replay, load_table
from kiban.collect.manifest import Manifests, TableState
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE
from kiban.errors import UsageError
from kiban.spreadsheets import inert
from kiban.store import Store

if TYPE_CHECKING:
    from kiban.project import Project

ROW = "__kiban_qrow"


@dataclass(frozen=True)
class QuarantinedRow:
    asset: str
    load_id: str
    row_number: int
    location: str
    file: str | None
    line: int | None
    column: str | None
    raw: str
    reason: str
    replayed: bool


@dataclass
class ReplayResult:
    asset: str
    tried: int = 0
    landed: int = 0
    still_failing: int = 0
    not_replayable: int = 0  # rows without values (the connector could not parse them)
    load: LoadResult | None = None
    reasons: list[str] = field(default_factory=list)


def rows(project: Project, store: Store, asset: str | None = None, include_replayed: bool = False,
         load_id: str | None = None) -> list[QuarantinedRow]:
    """Quarantined rows (of one table, or all), oldest load first."""
    manifests = Manifests(store)
    files = [f for f in manifests.quarantine_files(project.name, asset) if load_id in (None, f[1])]
    replayed = manifests.replayed([f[1] for f in files])
    found: list[QuarantinedRow] = []
    con = sessions.session()
    try:
        for key, load, path, _ in files:
            full = project.lake_dir / path
            if not full.exists():
                continue
            for r in con.execute("select row_number, location, file, line, \"column\", raw, reason from "
                                 "read_parquet(?) order by row_number", [str(full)]).fetchall():
                done = (load, int(r[0])) in replayed
                if done and not include_replayed:
                    continue
                found.append(QuarantinedRow(key, load, int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], done))
    finally:
        con.close()
    return found


def export(found: list[QuarantinedRow], target: Path) -> int:
    """Write rows to a CSV or Parquet file (by the target's suffix); returns how many."""
    if target.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"cannot export to {target.name}", "name a .csv or .parquet file")
    csv_file = target.suffix.lower() == ".csv"
    # refused rows are what a source sent: in a spreadsheet none of it may become a formula
    records = [{k: inert(v) for k, v in r.__dict__.items()} for r in found] if csv_file else \
        [r.__dict__ for r in found]
    table = pa.Table.from_pylist(records, schema=pa.schema([
        ("asset", pa.string()), ("load_id", pa.string()), ("row_number", pa.int64()), ("location", pa.string()),
        ("file", pa.string()), ("line", pa.int64()), ("column", pa.string()), ("raw", pa.string()),
        ("reason", pa.string()), ("replayed", pa.bool_())]))
    target.parent.mkdir(parents=True, exist_ok=True)
    if csv_file:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, target)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, target)
    return table.num_rows


def _replay_types(declared: Declared, state: TableState | None, names: list[str]) -> Declared:
    """``declared`` and, for an undeclared column the lake table has as a DECIMAL, that type: a number the loader
    refused for its default DECIMAL(38,9) (an exact number of the source: NaN, too many decimals) stays refused
    until its type is declared — its JSON text must not land as text."""
    landed = {n: t for n, t in (state.schema if state else ()) if n in names and n not in declared.types
              and decimal_scale(t) is not None}
    if not landed:
        return declared
    hints = {n: "the lake table has it as this type: declare the column's type under `columns:` (a wider "
                "decimal(p,s), double or varchar) to land such values" for n in landed}
    return Declared({**landed, **declared.types}, declared.key, {**hints, **declared.hints})


def replay(project: Project, store: Store, asset: str, run_id: str | None = None) -> ReplayResult:
    """Cast the table's quarantined rows again with today's declarations; land those that pass."""
    tables = project.source_tables()
    if asset not in tables:
        raise UsageError(f"{asset} is not a collected table", "name one of: " + ", ".join(sorted(tables)))
    source, name = tables[asset]
    spec = project.sources[source].tables[name]
    result = ReplayResult(asset)
    pending = rows(project, store, asset)
    values: list[dict[str, Any]] = []
    origin: list[tuple[str, int]] = []
    for row in pending:
        try:
            data = json.loads(row.raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            result.not_replayable += 1
            continue
        if row.file is not None:
            data.setdefault(SOURCE_FILE, row.file)
            data.setdefault(SOURCE_LINE, row.line)
        data[ROW] = len(origin)
        values.append(data)
        origin.append((row.load_id, row.row_number))
    result.tried = len(values)
    if not values:
        return result
    names = list(dict.fromkeys(k for v in values for k in v))
    batch = pa.RecordBatch.from_pylist([{n: v.get(n) for n in names} for v in values])
    declared = _replay_types(Declared({c.name: c.type for c in spec.columns if c.type}, spec.primary_key),
                             Manifests(store).state(project.name, asset), names)
    con = sessions.session()
    try:
        good, bad = cast_batch(con, batch, declared, 1)
    finally:
        con.close()
    result.still_failing = len(bad)
    result.reasons = sorted({b.reason for b in bad})[:5]
    if good.num_rows == 0:
        return result
    passed = [origin[i] for i in good.column(ROW).to_pylist()]
    clean = good.drop_columns([ROW])
    # the rows are marked replayed in the same commit as they land
    result.load = load_table(project, source, name, store, run_id=run_id, replay=Replay(clean.to_batches(), passed))
    result.landed = result.load.record.rows_landed
    return result
