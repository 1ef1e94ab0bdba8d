"""What every engine exposes of the lake: the Parquet files of each lake table, and the derived views.

One place decides which files a lake table is made of, so DuckDB, PostgreSQL and Spark see the same rows:

- a **collected** table (``sources/NAME.yml``) is exactly the files its committed manifests name
  (``CollectedTable.files``, read from the state store by ``kiban.collect.collector.collected_tables``);
  files of a load that never committed are not part of it, whatever lies in the folder;
- a **plain lake folder** is every Parquet file under ``lake/<name>/``.

The derived views of a collected table (``<name>_latest``, ``<name>_history``) are written here once, in
DuckDB's SQL with explicit column lists; DuckDB runs them as they are, the other engines transpile them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kiban.engines.base import COLLECTED_VERSION, EMPTY_LAKE, CollectedTable
from kiban.project import Asset
from kiban.quoting import quote as _q


@dataclass(frozen=True)
class LakeTable:
    """One lake asset as an engine should expose it: the table ``lake.<name>`` over ``files``."""

    asset: Asset
    version: str  # its data version (EMPTY_LAKE while it has no files)
    files: tuple[str, ...]  # absolute paths of its Parquet files, in a stable order
    collected: CollectedTable | None = None  # set for a collected table: its keys and history settings

    @property
    def name(self) -> str:
        return self.asset.name


def folder_files(folder: Path) -> tuple[str, tuple[str, ...]]:
    """(version, files) of a plain lake folder: a hash of its Parquet files' paths, sizes and mtimes."""
    digest = hashlib.sha256()
    files: list[str] = []
    for rel, (size, mtime_ns) in folder_identities(folder).items():  # in walk order: folders and names sorted
        digest.update(f"{rel}\0{size}\0{mtime_ns}\n".encode())
        files.append(os.path.abspath(os.path.join(folder, rel)))
    return digest.hexdigest(), tuple(files)


def lake_table(asset: Asset, collected: Mapping[str, CollectedTable] | None) -> LakeTable:
    """The files of one lake asset: its committed loads when it is collected, else its folder's Parquet files."""
    if collected is not None and asset.key in collected:
        table = collected[asset.key]
        files = tuple(str(f) for f in table.files)
        return LakeTable(asset, COLLECTED_VERSION + table.version if files else EMPTY_LAKE, files, table)
    version, files = folder_files(asset.path)
    return LakeTable(asset, version if files else EMPTY_LAKE, files)


def lake_tables(lake_assets: Iterable[Asset], collected: Mapping[str, CollectedTable] | None) -> list[LakeTable]:
    """Every lake asset with its files (see ``lake_table``)."""
    return [lake_table(asset, collected) for asset in lake_assets]


def derived_views(name: str, table: CollectedTable, columns: list[str]) -> list[tuple[str, str]]:
    """``(view name, SELECT in DuckDB's SQL)`` of the views a collected table offers besides ``lake.<name>``.

    ``columns``: the columns its files really have (the settings may be newer than the data). With a primary
    key, ``<name>_latest`` keeps the newest row per key (by load, then cursor), deletions removed; with
    ``history: scd2`` also ``<name>_history``: every version with ``valid_from`` and ``valid_to``.
    """
    present = set(columns)
    if not table.primary_key or not set(table.primary_key) <= present:
        return []
    source = f"lake.{_q(name)}"
    key = ", ".join(_q(c) for c in table.primary_key)
    listed = ", ".join(_q(c) for c in columns)
    cursor = table.cursor if table.cursor in present else None
    # the newest load's version first (each load reads a later snapshot of the source), then the cursor: a
    # transaction that began earlier can commit a smaller updated_at after a larger one (PostgreSQL's now())
    order = '"_loaded_at" desc, "_load_id" desc' + (f", {_q(cursor)} desc nulls last" if cursor else "")
    deletes = table.deletes and "_deleted" in present
    alive = ' and not coalesce("_deleted", false)' if deletes else ""
    views = [(f"{name}_latest",
              f"select {listed} from (select {listed}, row_number() over (partition by {key} order by {order}) "
              f"as __kiban_rn from {source}) as latest where __kiban_rn = 1{alive}")]
    if table.history:
        alive = ' where not coalesce("_deleted", false)' if deletes else ""
        views.append((f"{name}_history",
                      f"select * from (select {listed}, \"_loaded_at\" as valid_from, lead(\"_loaded_at\") over "
                      f"(partition by {key} order by \"_loaded_at\", \"_load_id\") as valid_to "
                      f"from {source}) as versions{alive}"))
    return views


def key_changes(table: CollectedTable) -> str:
    """A digest of the loads that gave a key seen in an earlier load a new version, or deleted a key ('' none).

    ``lake.<name>`` only grows with each load, but its per-key views do not: a new version of an old key replaces
    (``_latest``) or closes (``_history``) a row they showed before, whatever its time. A reader of those views
    can therefore be recomputed by recent partitions only while this digest stays the same. Reads only the key,
    load and deletion columns of the committed files (one scan per change of the file list; ``run.inputs``
    caches the answer)."""
    if not table.primary_key or not table.files:
        return ""
    import duckdb  # the default engine's library: only projects with per-key views read through pay for it

    files = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in table.files) + "]"
    source = f"read_parquet({files}, union_by_name = true, hive_partitioning = false)"
    con = duckdb.connect()
    try:
        present = {r[0] for r in con.execute(f"describe select * from {source}").fetchall()}
        if not set(table.primary_key) | {"_load_id", "_loaded_at"} <= present:
            return ""
        key = ", ".join(_q(c) for c in table.primary_key)
        deleted = ' or coalesce("_deleted", false)' if "_deleted" in present else ""
        extra = ', "_deleted"' if deleted else ""
        rows = con.execute(
            f'select distinct "_load_id" from (select "_load_id", first_value("_load_id") over (partition by {key} '
            f'order by "_loaded_at", "_load_id") as __kiban_first{extra} '
            f'from {source}) as versions where "_load_id" <> __kiban_first{deleted} order by 1').fetchall()
    finally:
        con.close()
    if not rows:
        return ""
    return hashlib.sha256("\n".join(str(r[0]) for r in rows).encode()).hexdigest()[:16]


def folder_identities(folder: Path) -> dict[str, tuple[int, int]]:
    """Each Parquet file of a plain lake folder (relative path) → (size, mtime_ns): what ``folder_files`` hashes."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for filename in sorted(filenames):
            if filename.endswith(".parquet"):
                path = os.path.join(dirpath, filename)
                stat = os.stat(path)
                out[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns)
    return out
