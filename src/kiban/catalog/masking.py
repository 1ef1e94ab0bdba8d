"""The masked session: personal data is masked where a query reads it, not where its result is shown.

A person's query runs in a fresh in-memory DuckDB. The warehouse is ATTACHed ``READ_ONLY`` under an internal,
unguessable alias, and the session's own catalog gets the schemas ``lake``, ``warehouse`` and ``mart`` whose
objects are *views*: projections of the published relations in which every PII column is replaced by its
mask. Before the query runs, :func:`kiban.catalog.safety.prove_reads` has shown with DuckDB's own parser
that every table reference resolves to one of these views (never to the alias, a file, a table function
that reads, or the system catalog). So every operator of the query — filter, sort, join, aggregate,
UNPIVOT, SUMMARIZE, cast, even an error message — only ever sees masked values.

Masks:
- ``redact`` (the default): one constant for every non-null value. Nothing is learnt from it, not equality,
  not length, not order.
- ``hash`` (``pii: {mask: hash}`` on the column): a keyed HMAC-SHA-256 (first 16 hex digits) with a key kept
  in the state folder (``.kiban/console.key``, 0600). Equal values stay equal, so joins and distinct
  counts work; nobody can compute it for a guess, because the function is internal to the session and the
  key never enters SQL.

NULL stays NULL (whether a value is present is not the value). The session is then locked: no file access
but the lake folder, no spilling, a memory limit and a thread count per query, configuration locked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.warehouse import SCHEMAS, attach_source, lock_down, new_session, source_alias, source_of

if TYPE_CHECKING:
    from kiban.catalog.pii import MaskPlan
    from kiban.project import Project

REDACTED = "•••"
KEY_FILE = "console.key"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def mask_key(project: Project) -> bytes:
    """The project's masking key, made once (0600) in the state folder."""
    path = Path(project.state_dir) / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


@dataclass
class MaskedSession:
    """An open masked session: the connection, and the names to hide from people (the alias, the hash)."""

    con: Any
    alias: str
    hash_function: str

    def clean(self, text: str) -> str:
        """An engine message without the internal names."""
        return text.replace(f"{self.alias}.", "").replace(self.alias, "warehouse").replace(self.hash_function,
                                                                                            "mask")


def _mask_expression(column: str, kind: str | None, hash_function: str) -> str:
    col = quote(column)
    if kind is None:
        return col
    redacted = f"cast({_literal(REDACTED)} as varchar)"
    value = f"{hash_function}(cast({col} as varchar))" if kind == "hash" else redacted
    return f"case when {col} is null then null else {value} end as {col}"


Found = dict[str, tuple[str, str, list[str]]]  # "layer.name" → (schema, table, columns) as the source spells them


def relation_columns(con: Any, alias: str, relations: Iterable[str]) -> Found:
    """The columns of each of ``relations`` in the source attached as ``alias`` (unknown ones are left out)."""
    wanted = sorted({r.lower() for r in relations})
    found: Found = {}
    if not wanted:
        return found
    rows = con.execute(  # no bound parameter: its first use makes DuckDB import pandas (seconds, per worker)
        f"select schema_name, table_name, column_name from duckdb_columns() where database_name = {_literal(alias)} "
        "and lower(schema_name) in ('lake', 'warehouse', 'mart') order by schema_name, table_name, "
        "column_index").fetchall()
    for schema, table, column in rows:
        key = f"{schema.lower()}.{table.lower()}"
        if key in wanted:
            found.setdefault(key, (schema, table, []))[2].append(column)
    return found


def hasher(secret: bytes) -> Any:
    def keyed(value: str) -> str:
        return hmac.new(secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

    return keyed


def install_views(con: Any, alias: str, found: Found, plans: dict[str, dict[str, str]], secret: bytes | None,
                  hash_function: str) -> None:
    """Create ``lake``/``warehouse``/``mart`` views over the source in which each planned column is masked.

    A view lists its columns by name: a column the plan has not seen (published after it was made) is not in it.
    """
    if any(kind == "hash" for plan in plans.values() for kind in plan.values()):
        if secret is None:
            raise ValueError("a hash mask needs the project's masking key")
        con.create_function(hash_function, hasher(secret), ["VARCHAR"], "VARCHAR")
    ddl = [f"create schema {quote(s)}" for s in SCHEMAS]
    for key, (schema, table, columns) in sorted(found.items()):
        plan = plans.get(key, {})
        select = ", ".join(_mask_expression(c, plan.get(c), hash_function) for c in columns)
        ddl.append(f"create view {quote(schema.lower())}.{quote(table)} as select {select} "
                   f"from {alias}.{quote(schema)}.{quote(table)}")
    con.execute("; ".join(ddl))


def plan_masks(masks: MaskPlan | None, found: Found) -> dict[str, dict[str, str]]:
    """Each relation's masked columns and their kind (nothing masked for a person with clearance)."""
    if masks is None:
        return {}
    return {key: dict(masks.masks(key, columns)) for key, (_, _, columns) in found.items()}


@contextlib.contextmanager
def open_masked(project: Project, relations: Iterable[str], masks: MaskPlan | None,
                *, memory_limit: str | None, threads: int | None) -> Iterator[MaskedSession]:
    """A locked session, in this process, whose ``lake``/``warehouse``/``mart`` views are the masked
    ``relations`` (people's queries run the same steps in a worker process, :mod:`kiban.catalog.sandbox`).

    ``masks`` is a :class:`kiban.catalog.pii.MaskPlan` (or None: every column clear, for people with clearance).
    """
    source = source_of(project)
    con = new_session()
    alias = source_alias()
    hash_function = f"__kiban_mask_{secrets.token_hex(6)}"
    try:
        attach_source(con, source, alias)
        found = relation_columns(con, alias, relations)
        plans = plan_masks(masks, found)
        secret = mask_key(project) if any("hash" in p.values() for p in plans.values()) else None
        install_views(con, alias, found, plans, secret, hash_function)
        lock_down(con, source, search_path="mart,warehouse,lake", memory_limit=memory_limit, threads=threads)
    except BaseException:
        con.close()
        raise
    try:
        yield MaskedSession(con, alias, hash_function)
    finally:
        con.close()


_reserved: frozenset[str] | None = None


def reserved_names() -> frozenset[str]:
    """Relations DuckDB itself offers without a schema (duckdb_views, pg_class, …): no CTE may take their names."""
    global _reserved
    if _reserved is None:
        con = new_session()
        try:
            rows = con.execute(
                "select lower(view_name) from duckdb_views() where database_name in ('system', 'temp') union "
                "select lower(table_name) from duckdb_tables() where database_name in ('system', 'temp')"
            ).fetchall()
        finally:
            con.close()
        _reserved = frozenset(r[0] for r in rows)
    return _reserved
