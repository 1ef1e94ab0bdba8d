"""dbt incremental models → kiban incremental models.

dbt filters new rows itself inside ``{% if is_incremental() %}``, almost always as
``where <col> > (select max(<col>) from {{ this }})``. kiban cuts time partitions of a
``time_column`` instead and keeps the SQL plain. The model is rendered once with
``is_incremental()`` false (the SQL kiban keeps) and once with it true; the comparison against
``max(...)`` of ``this`` in the second names the time column. Without one, the model is
imported as a table (and the report says so).
"""

from __future__ import annotations

from sqlglot import exp, parse_one


def time_column(incremental_sql: str, this: str) -> str | None:
    """The column the ``is_incremental()`` branch compares with ``max(column)`` of ``this``."""
    try:
        tree = parse_one(incremental_sql, read="duckdb")
    except Exception:
        return None
    schema, _, name = this.rpartition(".")
    for compare in tree.find_all(exp.GT, exp.GTE):
        left, right = compare.left, compare.right
        if isinstance(right, exp.Subquery | exp.Select) and isinstance(left, exp.Column):
            select = right.this if isinstance(right, exp.Subquery) else right
            tables = [t for t in select.find_all(exp.Table) if t.name.lower() == name.lower()
                      and (not schema or t.db.lower() in ("", schema.lower()))]
            maxes = list(select.find_all(exp.Max))
            if tables and maxes and isinstance(maxes[0].this, exp.Column):
                return str(maxes[0].this.name)
    return None
