"""Relations, columns and query results the way dbt's macros expect to see them.

dbt_utils checks that a value is a relation by treating it as a mapping whose
``metadata.type`` ends with ``Relation``, and reads columns through ``.column``, ``.data_type``
and ``.is_string()``; these small classes give exactly that, rendering as kiban's
``layer.name``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class Relation(Mapping[str, Any]):
    """A table as a model's SQL names it: ``{{ ref('x') }}`` renders as ``warehouse.x``."""

    def __init__(self, schema: str, identifier: str, *, kind: str = "table", database: str | None = None) -> None:
        self.schema = schema
        self.identifier = identifier
        self.database = database
        self.type = kind
        self.is_cte = False

    # the Mapping side is what dbt_utils' _is_relation() looks at
    def _as_dict(self) -> dict[str, Any]:
        return {"metadata": {"type": "DuckDBRelation"}, "type": self.type,
                "path": {"database": self.database, "schema": self.schema, "identifier": self.identifier}}

    def __getitem__(self, key: str) -> Any:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return 3

    def __hash__(self) -> int:
        return hash((self.schema, self.identifier))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Relation) and (self.schema, self.identifier) == (other.schema, other.identifier)

    @property
    def name(self) -> str:
        return self.identifier

    @property
    def table(self) -> str:
        return self.identifier

    @property
    def is_table(self) -> bool:
        return self.type == "table"

    @property
    def is_view(self) -> bool:
        return self.type == "view"

    def render(self) -> str:
        return f"{self.schema}.{self.identifier}" if self.schema else self.identifier

    def include(self, database: bool = True, schema: bool = True, identifier: bool = True) -> Relation:
        return Relation(self.schema if schema else "", self.identifier, kind=self.type)

    def quote(self, *args: Any, **kwargs: Any) -> Relation:
        return self

    def incorporate(self, *args: Any, **kwargs: Any) -> Relation:
        return self

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<Relation {self.render()}>"

    def __html__(self) -> str:  # Jinja's Markup protocol: render without escaping
        return self.render()


@dataclass
class Column:
    """One column of a relation, as ``adapter.get_columns_in_relation`` returns it."""

    column: str
    dtype: str

    @property
    def name(self) -> str:
        return self.column

    @property
    def data_type(self) -> str:
        return self.dtype

    @property
    def quoted(self) -> str:
        return '"' + self.column.replace('"', '""') + '"'

    def is_string(self) -> bool:
        return self.dtype.upper().startswith(("VARCHAR", "TEXT", "STRING", "CHAR"))

    def is_number(self) -> bool:
        return self.is_numeric() or self.is_float() or self.is_integer()

    def is_numeric(self) -> bool:
        return self.dtype.upper().startswith(("DECIMAL", "NUMERIC"))

    def is_integer(self) -> bool:
        return self.dtype.upper() in {"INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"}

    def is_float(self) -> bool:
        return self.dtype.upper() in {"DOUBLE", "FLOAT", "REAL"}

    def string_size(self) -> int:
        return 65535


class ResultColumn:
    def __init__(self, name: str, values: list[Any]) -> None:
        self.name = name
        self._values = values

    def values(self) -> tuple[Any, ...]:
        return tuple(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)


class QueryTable:
    """What ``run_query`` returns: enough of an agate table for the macros people write."""

    def __init__(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.column_names = tuple(names)
        self.rows = [tuple(r) for r in rows]
        self.columns = [ResultColumn(n, [r[i] for r in rows]) for i, n in enumerate(names)]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def print_table(self, *args: Any, **kwargs: Any) -> None:
        return None
