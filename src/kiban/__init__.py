"""kiban (基盤): a DataOps platform whose service levels come from use cases."""

from typing import Any

from kiban.api import Trained, asset, score, train  # the decorators of Python models (a light module)

__version__ = "0.1.0"

__all__ = ["Trained", "__version__", "asset", "query", "read", "score", "train"]


def read(relation: str, **options: Any) -> Any:
    """A published table, masked for the reader, as Arrow (or pandas/polars): see :func:`kiban.notebook.read`."""
    from kiban.notebook import read as read_table  # DuckDB and Arrow load on first use, not on `import kiban`

    return read_table(relation, **options)


def query(sql: str, params: Any = None, **options: Any) -> Any:
    """One SELECT over the published assets, masked for the reader: see :func:`kiban.notebook.query`."""
    from kiban.notebook import query as run_query

    return run_query(sql, params, **options)
