"""The column types of a lake table, and how each was set (``kiban show``: pin the inferred ones).

Schema only: a collected table's types come from its manifest, a plain folder's from its Parquet files'
footers (DuckDB ``DESCRIBE``, which reads no row)."""

from __future__ import annotations

import duckdb

from kiban.collect.manifest import Manifests
from kiban.engines.lake import folder_files
from kiban.project import Project
from kiban.store import Store


def lake_types(project: Project, key: str) -> list[tuple[str, str, str]]:
    """(column, type, how) of a lake table as its files have it: ``declared`` (sources' `columns:`), ``inferred``
    (`infer_types: true`: pin it by declaring it), ``text`` (undeclared text of a collected table), ``file`` (a
    plain lake folder's Parquet types)."""
    tables = project.source_tables() if project.sources else {}
    if key in tables:
        source, name = tables[key]
        spec = project.sources[source].tables[name]
        declared = {c.name for c in spec.columns if c.type}
        store = Store(project.state_url)
        try:
            state = Manifests(store).state(project.name, key)
        finally:
            store.close()
        out = []
        for column, kind in (state.schema if state else ()):
            how = "declared" if column in declared else \
                "inferred" if spec.infer_types and kind.upper() != "VARCHAR" else "text"
            out.append((column, kind, how))
        return out
    _version, files = folder_files(project.assets[key].path)
    if not files:
        return []
    con = duckdb.connect()
    try:
        rows = con.execute("describe select * from read_parquet(?, union_by_name = true)", [list(files)]).fetchall()
    except duckdb.Error:
        return []
    finally:
        con.close()
    return [(str(r[0]), str(r[1]), "file") for r in rows]
