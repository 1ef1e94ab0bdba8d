"""What ``sources/NAME.yml`` may say: one source system and its tables or streams.

A leaf module (Pydantic only): the project loader validates sources with it without importing a
connector. Options that only one kind of source understands are validated by that connector's
own ``Options`` model (``kiban.collect.connectors``), from the keys this module leaves over.

Example::

    type: postgres                 # files, logs, xlsx, postgres, mysql, sqlite, http
    url: env:POS_DB_URL            # databases; never written to logs, the store or messages
    tables:
      orders:
        mode: incremental
        cursor: updated_at
        lookback: 10m
        primary_key: [order_id]
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kiban.checks.spec import TableCheck
from kiban.project.config import ColumnConfig, parse_duration

SOURCE_TYPES = ("files", "logs", "xlsx", "postgres", "mysql", "sqlite", "http")
NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Columns kiban adds to every landed row. Sources must not use these names.
LOAD_ID, LOADED_AT, SOURCE_FILE, SOURCE_LINE = "_load_id", "_loaded_at", "_source_file", "_source_line"
METADATA_COLUMNS = (LOAD_ID, LOADED_AT, SOURCE_FILE, SOURCE_LINE)
LANDING_TYPES = ("files", "logs", "xlsx")
LANDING_KEYS = ("settle", "ready_marker", "optional", "on_change", "infer_types")
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class TableSpec(BaseModel):
    """One table or stream of a source; becomes the lake asset ``lake.<source>_<table>``.

    Keys not listed here belong to the connector (``path``, ``encoding``, ``query``, ``pagination`` …)
    and are kept in ``options`` for it to validate.
    """

    model_config = ConfigDict(extra="allow", defer_build=True, frozen=True)

    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    # full: every load reads everything; incremental: rows whose cursor passed the last committed value
    mode: Literal["full", "incremental"] = "full"
    cursor: str | None = None
    # incremental: read again at least this far behind the last cursor (a duration like 10m for times, a number
    # for ids), for rows committed late; a time cursor reads again DEFAULT_LOOKBACK_S and as far back as the
    # oldest transaction the source had open at the last read. What was landed before is recognised by its
    # content (or `version:`) and dropped; a change whose cursor did not move lands
    lookback: str | float | None = None
    # incremental: a column the source changes on every update of a row (a row version, a counter): a change is
    # (primary key, version) — without it, (primary key, the hash of the row's values)
    version: str | None = None
    primary_key: tuple[str, ...] = ()
    detect_deletes: bool = False  # full mode: rows gone from the source are landed as deletions
    history: Literal["scd2"] | None = None  # valid_from/valid_to versions of rows overwritten in place
    on_drift: Literal["evolve", "warn", "fail"] = "evolve"
    # more quarantined rows than this share (e.g. "1%") or count fails the load instead of warning
    max_quarantined: str | int | None = None
    columns: tuple[ColumnConfig, ...] = ()  # declared types are enforced: failing rows are quarantined
    checks: tuple[TableCheck, ...] = ()
    time_column: str | None = None  # how far the data reaches (its max is the lake table's watermark)
    # landing files (files, logs, xlsx): a file is taken once its size and modification time have stood still
    # this long (the load waits for a younger one, at most SETTLE_WAIT_FACTOR times as long)
    settle: str | float = "1s"
    # landing files: take a file only when a marker file sits next to it, e.g. ".done" (orders.csv.done)
    ready_marker: str | None = None
    optional: bool = False  # landing files: a path that matches no file is a warning, not an error
    # landing files: a file landed before whose content changed — land the new version's rows (append), land them
    # instead of the earlier load's, which is retracted in the same commit (replace), or leave it with a note
    # (refuse; `kiban loads retract` the earlier load to take the new version)
    on_change: Literal["append", "replace", "refuse"] = "append"
    # landing text files (CSV, TSV): columns without a declared type get the type every value of the first
    # load's first block casts to (boolean, bigint, double, date, timestamp — else text); later loads keep the
    # types the table has (values that do not fit are quarantined). `kiban show` lists them, to pin them
    infer_types: bool = False
    expected_by: str | None = None  # local "HH:MM" by which each day's load has normally arrived (kiban.slo)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _key_list(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("settle")
    @classmethod
    def _settle(cls, value: str | float) -> str | float:
        if parse_duration(value) < 0:
            raise ValueError("settle cannot be negative")
        return value

    @field_validator("max_quarantined")
    @classmethod
    def _threshold(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str) and not _SHARE.match(value):
            raise ValueError(f"'{value}' is neither a share like 1% nor a number of rows")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TableSpec:
        if self.mode == "incremental" and not self.cursor:
            raise ValueError("mode: incremental needs `cursor:` (the column that grows, e.g. updated_at or an id)")
        if self.lookback is not None and self.mode != "incremental":
            raise ValueError("`lookback:` only means something with mode: incremental")
        if self.version is not None and self.mode != "incremental":
            raise ValueError("`version:` only means something with mode: incremental")
        if self.detect_deletes and not self.primary_key:
            raise ValueError("detect_deletes needs `primary_key:` to know which rows are gone")
        if self.history == "scd2" and not self.primary_key:
            raise ValueError("history: scd2 needs `primary_key:` to follow each row's versions")
        for column in self.columns:
            if column.name in METADATA_COLUMNS:
                raise ValueError(f"column {column.name} is reserved: kiban adds it to every landed row")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The connector's own keys."""
        return dict(self.model_extra or {})

    def quarantine_limit(self, rows_read: int) -> int | None:
        """The most quarantined rows a load of ``rows_read`` rows may have before it fails (None: no limit)."""
        if self.max_quarantined is None:
            return None
        if isinstance(self.max_quarantined, int):
            return self.max_quarantined
        match = _SHARE.match(self.max_quarantined)
        assert match
        return int(rows_read * float(match.group(1)) / 100)

    def settle_seconds(self) -> float:
        return parse_duration(self.settle)

    def lookback_value(self) -> float | None:
        """The look-back as seconds (for a duration) or a plain number (for an id cursor)."""
        if self.lookback is None:
            return None
        return parse_duration(self.lookback)


class SourceSpec(BaseModel):
    """``sources/NAME.yml``: one source system. Keys other than these are the connector's (``base_url`` …)."""

    model_config = ConfigDict(extra="allow", defer_build=True, frozen=True)

    type: Literal["files", "logs", "xlsx", "postgres", "mysql", "sqlite", "http"]
    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    url: str | None = None  # databases: a URL or env:NAME — resolved only when a load starts
    batch_rows: int = Field(default=100_000, ge=1, le=10_000_000)  # rows per batch: bounds memory
    tables: dict[str, TableSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shared_landing_keys(cls, data: Any) -> Any:
        """``settle:``, ``ready_marker:``, ``optional:`` and ``on_change:`` on the source are its tables' defaults
        (a table's own wins), like the connectors' keys."""
        if not isinstance(data, dict) or not any(key in data for key in LANDING_KEYS):
            return data
        data = dict(data)
        shared = {key: data.pop(key) for key in LANDING_KEYS if key in data}
        tables = data.get("tables")
        if isinstance(tables, dict):
            data["tables"] = {name: {**shared, **(table if isinstance(table, dict) else {})}
                              if table is None or isinstance(table, dict) else table
                              for name, table in tables.items()}
        return data

    @model_validator(mode="after")
    def _landing_keys(self) -> SourceSpec:
        if self.type in LANDING_TYPES:
            return self
        for name, table in self.tables.items():
            for key in LANDING_KEYS:
                if key in table.model_fields_set:
                    raise ValueError(f"table {name}: `{key}:` is for landing files (types "
                                     f"{', '.join(LANDING_TYPES)}), not for a {self.type} source")
        return self

    @field_validator("tables")
    @classmethod
    def _table_names(cls, value: dict[str, TableSpec]) -> dict[str, TableSpec]:
        for name in value:
            if not re.match(NAME, name):
                raise ValueError(f"table name '{name}' must be letters, digits and _ (it becomes part of a "
                                 "lake table's name)")
        return value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
