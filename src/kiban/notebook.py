"""Reading marts from a notebook: ``kiban.read("mart.daily_sales", where=…)`` and ``kiban.query(sql)``.

Both read the *published* version — the warehouse's snapshot, which a run never holds and never half-writes —
through the console's masked path (:mod:`kiban.catalog.reading`): PII columns are masked where the query reads
them unless the reader has clearance. Who reads:

- ``token=`` (or ``KIBAN_TOKEN``): an API token of a console user (``kiban users token NAME``). The read is
  recorded as that user, and a user whose role has PII clearance sees PII values (recorded as such).
- otherwise ``user=`` (or ``KIBAN_USER``, else ``local:<login name>``): a name for the query history only.
  A name proves nothing, so such reads are always masked.

The project is ``project=`` (a folder), else ``KIBAN_PROJECT``, else the folder holding ``kiban.yml`` above the
current directory. Results are Arrow tables; ``to="pandas"`` or ``to="polars"`` converts them.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kiban.catalog.reading import Reader, flush_all, select_sql, shared_reader
from kiban.catalog.usage import Actor
from kiban.errors import UsageError
from kiban.python.frames import convert
from kiban.web.accounts import Accounts
from kiban.web.catalog_views import PII_ROLE

FORMATS = {"arrow": "pa.Table", "pandas": "pd.DataFrame", "polars": "pl.DataFrame"}


def _project_dir(project: str | os.PathLike[str] | None) -> Path:
    return Path(project or os.environ.get("KIBAN_PROJECT") or ".").resolve()


def _reader(project: str | os.PathLike[str] | None, isolated: bool = True) -> Reader:
    return shared_reader(_project_dir(project), "notebook", isolated=isolated)


def flush() -> None:
    """Wait until every read so far is recorded in its project's query history (done at exit anyway)."""
    flush_all()


def whoami(reader: Reader, user: str | None, token: str | None) -> Actor:
    """The actor of a read: a token's user (with their clearance), else a name that is always masked."""
    token = token or os.environ.get("KIBAN_TOKEN")
    if token:
        assert reader.console.store is not None
        found = Accounts(reader.console.store).token_user(token)
        if found is None:
            raise UsageError("the API token is not valid (revoked, or from another project)",
                             "make one with `kiban users token NAME`, or read without a token (PII masked)")
        return Actor(found.name, None, found.can(PII_ROLE))
    name = user or os.environ.get("KIBAN_USER")
    if not name:
        try:
            name = f"local:{getpass.getuser()}"
        except (KeyError, OSError):
            name = "local"
    return Actor(name, None, False)


def _out(table: Any, to: str) -> Any:
    if to not in FORMATS:
        raise UsageError(f"unknown result format '{to}'", f"use one of: {', '.join(FORMATS)}")
    return convert(table, FORMATS[to])


def query(sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *, to: str = "arrow",
          project: str | os.PathLike[str] | None = None, user: str | None = None, token: str | None = None,
          timeout: float | None = None, isolated: bool = True) -> Any:
    """Run one SELECT over the project's published assets, masked for the reader; Arrow (or ``to=``).

    ``params`` are bound (``?`` or ``$name``). Raises :class:`kiban.catalog.safety.QueryRefused` for anything
    but a read of the project's assets. The read runs in a worker process the OS bounds like a console query
    (a read that wants too much memory fails alone, the kernel carries on); ``isolated=False`` reads in this
    process on a warm, pooled session instead — faster for repeated large reads, bounded by DuckDB's memory
    limit only."""
    reader = _reader(project, isolated)
    return _out(reader.arrow(sql, whoami(reader, user, token), params, timeout=timeout).table, to)


def read(relation: str, *, where: str | Mapping[str, Any] | None = None, columns: Sequence[str] | None = None,
         params: Sequence[Any] | None = None, limit: int | None = None, to: str = "arrow",
         project: str | os.PathLike[str] | None = None, user: str | None = None, token: str | None = None,
         timeout: float | None = None, isolated: bool = True) -> Any:
    """One published table or view (``mart.daily_sales``), masked for the reader; Arrow (or ``to=``).

    ``where`` is a mapping (``{"store_id": 3, "day": ["2026-11-01", "2026-11-02"]}``, bound as parameters) or
    a SQL condition (``"revenue > ?"`` with ``params=[1000]``); ``columns`` picks columns. ``isolated``: see
    :func:`query`."""
    sql, bound = select_sql(relation, columns, where, limit)
    if params and isinstance(where, Mapping):
        raise UsageError("params= goes with a SQL condition in where=, not with a mapping")
    return query(sql, [*bound, *(params or [])] or None, to=to, project=project, user=user, token=token,
                 timeout=timeout, isolated=isolated)
