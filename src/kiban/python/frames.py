"""Tables between kiban and a Python model's function: Arrow in, the frame type its parameter asks for (pandas,
polars, Arrow), and anything table-like it returns back to Arrow.

A leaf of ``kiban.python``: ``kiban.python.build`` hands a model its inputs with it and ``kiban.ml.training`` reads
the training features with it, so training need not import the builder that calls it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def convert(table: pa.Table, annotation: str) -> Any:
    kind = annotation.replace(" ", "").split("|")[0].lower()
    if kind.endswith("dataframe") and (kind.startswith(("pl.", "polars.")) or kind == "pl.dataframe"):
        import polars

        return polars.from_arrow(table)
    if kind.endswith("dataframe"):
        return table.to_pandas()
    return table


def as_arrow(value: Any) -> pa.Table | None:
    """A table as Arrow: pyarrow, pandas, polars, or anything with the Arrow C stream interface; else None."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatchReader):
        return value.read_all()
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and hasattr(value, "columns"):
        return pa.Table.from_pandas(value, preserve_index=False)
    if module == "polars" and hasattr(value, "to_arrow"):
        return value.to_arrow()
    if hasattr(value, "__arrow_c_stream__"):
        return pa.table(value)
    return None
