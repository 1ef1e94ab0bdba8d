"""``--verify``: every table kiban built compared with the one dbt-duckdb built from the same project.

For each model and seed: the row counts, the columns' types, and ``EXCEPT ALL`` both ways over the
columns dbt's table has (by name, so column order does not matter). The dbt file is attached read-only under the
catalog name dbt gave it (its file name), so dbt's views, which name that catalog, still resolve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kiban.dbt.report import EPHEMERAL, ImportReport
from kiban.dbt.seeds import literal, quoted
from kiban.errors import UsageError
from kiban.status import VerifyStatus


@dataclass
class Compared:
    dbt: str  # schema.table in dbt's file
    kiban: str
    dbt_rows: int | None
    kiban_rows: int | None
    only_dbt: int | None  # rows in dbt's table and not in kiban's (EXCEPT ALL)
    only_kiban: int | None
    status: VerifyStatus
    detail: str = ""


def verify(report: ImportReport, dbt_file: Path, warehouse: Path) -> list[Compared]:
    import duckdb

    if not dbt_file.is_file():
        raise UsageError(f"--verify: {dbt_file} does not exist", "build the dbt project first (dbt build)")
    catalog = dbt_file.stem
    if catalog == warehouse.stem:
        raise UsageError(f"--verify: the dbt file and kiban's warehouse are both called {catalog}.duckdb",
                         "rename one of them")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute(f"attach {literal(str(dbt_file.resolve()))} as {quoted(catalog)} (read_only)")
        tables = con.execute("select table_schema, table_name from information_schema.tables "
                             "where table_catalog = ?", [catalog]).fetchall()
        by_name: dict[str, list[str]] = {}
        for schema, name in tables:
            by_name.setdefault(str(name).lower(), []).append(str(schema))
        out: list[Compared] = []
        for item in report.converted:
            if item.kind not in ("model", "seed"):
                continue
            if item.kind == "model" and item.detail == EPHEMERAL:  # dbt built no table; what reads it is compared
                out.append(Compared(item.dbt, item.kiban, None, None, None, None, VerifyStatus.SKIPPED,
                                    "ephemeral in dbt: no table to compare (the models that read it are compared)"))
                continue
            identifier = item.identifier or item.dbt
            schemas = by_name.get(identifier.lower(), [])
            if not schemas:
                out.append(Compared(item.dbt, item.kiban, None, None, None, None, VerifyStatus.MISSING,
                                    "dbt's file has no such table"))
                continue
            schema = "main" if "main" in schemas else schemas[0]
            out.append(_compare(con, f"{quoted(catalog)}.{quoted(schema)}.{quoted(identifier)}",
                                f"{schema}.{identifier}", item.kiban))
        return out
    finally:
        con.close()


def _compare(con: Any, dbt_sql: str, dbt_name: str, kiban: str) -> Compared:
    layer, _, name = kiban.partition(".")
    kiban_sql = f"{quoted(layer)}.{quoted(name)}"
    try:
        theirs = {r[0]: str(r[1]) for r in con.execute(f"describe {dbt_sql}").fetchall()}
        mine_types = {r[0].lower(): str(r[1]) for r in con.execute(f"describe {kiban_sql}").fetchall()}
        columns, mine = list(theirs), set(mine_types)
    except Exception as exc:
        return Compared(dbt_name, kiban, None, None, None, None, VerifyStatus.MISSING, str(exc).splitlines()[0])
    absent = [c for c in columns if c.lower() not in mine]
    dbt_rows = con.execute(f"select count(*) from {dbt_sql}").fetchone()[0]
    kiban_rows = con.execute(f"select count(*) from {kiban_sql}").fetchone()[0]
    if absent:
        return Compared(dbt_name, kiban, dbt_rows, kiban_rows, None, None, VerifyStatus.DIFFERENT,
                        f"kiban's table lacks {', '.join(absent)}")
    cols = ", ".join(quoted(c) for c in columns)
    only_dbt = con.execute(f"select count(*) from (select {cols} from {dbt_sql} except all "
                           f"select {cols} from {kiban_sql})").fetchone()[0]
    only_kiban = con.execute(f"select count(*) from (select {cols} from {kiban_sql} except all "
                             f"select {cols} from {dbt_sql})").fetchone()[0]
    extra = len(mine) - len(columns)
    # the same values in another type are not the same table: a contract, a cast or an overflow tells them apart
    retyped = [f"{c} {theirs[c]} in dbt, {mine_types[c.lower()]} in kiban" for c in columns
               if theirs[c] != mine_types[c.lower()]]
    same = only_dbt == only_kiban == 0 and dbt_rows == kiban_rows and extra == 0 and not retyped
    status = VerifyStatus.IDENTICAL if same else VerifyStatus.DIFFERENT
    detail = "; ".join([*([f"kiban has {extra} more column(s)"] if extra else []),
                        *([f"types differ: {', '.join(retyped)}"] if retyped else [])])
    return Compared(dbt_name, kiban, dbt_rows, kiban_rows, only_dbt, only_kiban, status, detail)


def as_json(results: list[Compared]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def as_text(results: list[Compared]) -> str:
    compared = [r for r in results if r.status != VerifyStatus.SKIPPED]
    same = sum(r.status == VerifyStatus.IDENTICAL for r in compared)
    lines = [f"verify: {same} of {len(compared)} tables identical to dbt's"
             + (f" ({len(results) - len(compared)} not compared)" if len(compared) < len(results) else "")]
    for r in results:
        counts = f"rows dbt {r.dbt_rows} kiban {r.kiban_rows}"
        diff = "" if r.only_dbt is None else f", only in dbt {r.only_dbt}, only in kiban {r.only_kiban}"
        lines.append(f"  {r.status:9} {r.kiban:32} ← {r.dbt:32} {counts}{diff}{'; ' + r.detail if r.detail else ''}")
    return "\n".join(lines)
