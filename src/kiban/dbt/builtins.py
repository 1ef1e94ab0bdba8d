"""dbt-core's cross-database macros (``dbt.concat``, ``dbt.dateadd``…), written once for DuckDB.

Packages such as dbt_utils build their SQL from these; dbt-duckdb's own versions are the model
(its ``duckdb__`` implementations where it has them, dbt-core's ``default__`` ones elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _s(value: Any) -> str:
    return str(value)


def type_string() -> str:
    return "varchar"


def type_timestamp() -> str:
    return "timestamp"


def type_float() -> str:
    return "float"


def type_numeric() -> str:
    return "numeric(28,6)"


def type_bigint() -> str:
    return "bigint"


def type_int() -> str:
    return "integer"


def type_boolean() -> str:
    return "boolean"


def hash(field: Any) -> str:
    return f"md5(cast({_s(field)} as varchar))"


def concat(fields: list[Any]) -> str:
    return f"concat({', '.join(_s(f) for f in fields)})"


def dateadd(datepart: Any, interval: Any, from_date_or_timestamp: Any) -> str:
    """dbt-duckdb 1.11's: an INTERVAL multiplied by the value (quarter = 3 months, week = 7 days)."""
    unit, start = _s(datepart).lower(), _s(from_date_or_timestamp)
    if unit == "quarter":
        return f"({start} + (cast({_s(interval)} as bigint) * 3) * interval 1 month)"
    if unit == "week":
        return f"({start} + (cast({_s(interval)} as bigint) * 7) * interval 1 day)"
    return f"({start} + cast({_s(interval)} as bigint) * interval 1 {unit})"


def datediff(first_date: Any, second_date: Any, datepart: Any) -> str:
    first, second = _s(first_date), _s(second_date)
    if _s(datepart) == "week":
        return (f"({datediff(first, second, 'day')} // 7 + case "
                f"when date_part('dow', ({first})::timestamp) <= date_part('dow', ({second})::timestamp) then "
                f"case when {first} <= {second} then 0 else -1 end "
                f"else case when {first} <= {second} then 1 else 0 end end)")
    return f"(date_diff('{_s(datepart)}', {first}::timestamp, {second}::timestamp))"


def date_trunc(datepart: Any, date: Any) -> str:
    return f"date_trunc('{_s(datepart)}', {_s(date)})"


def last_day(date: Any, datepart: Any) -> str:
    if _s(datepart) == "quarter":
        return f"cast({dateadd('day', '-1', dateadd('month', '3', date_trunc(datepart, date)))} as date)"
    return f"cast({dateadd('day', '-1', dateadd(datepart, '1', date_trunc(datepart, date)))} as date)"


def safe_cast(field: Any, type: Any) -> str:
    return f"try_cast({_s(field)} as {_s(type)})"


def cast(field: Any, type: Any) -> str:
    return f"cast({_s(field)} as {_s(type)})"


def current_timestamp() -> str:
    return "now()"


def escape_single_quotes(expression: Any) -> str:
    return _s(expression).replace("'", "''")


def string_literal(value: Any) -> str:
    return "'" + escape_single_quotes(value) + "'"


def split_part(string_text: Any, delimiter_text: Any, part_number: Any) -> str:
    return f"string_split({_s(string_text)}, {_s(delimiter_text)})[{_s(part_number)}]"


def replace(field: Any, old_chars: Any, new_chars: Any) -> str:
    return f"replace({_s(field)}, {_s(old_chars)}, {_s(new_chars)})"


def right(string_text: Any, length_expression: Any) -> str:
    return f"right({_s(string_text)}, {_s(length_expression)})"


def length(expression: Any) -> str:
    return f"length({_s(expression)})"


def position(substring_text: Any, string_text: Any) -> str:
    return f"position({_s(substring_text)} in {_s(string_text)})"


def listagg(measure: Any, delimiter_text: Any = "','", order_by_clause: Any = None, limit_num: Any = None) -> str:
    order = f" {_s(order_by_clause)}" if order_by_clause else ""
    if limit_num:
        return f"array_to_string(list_slice(list({_s(measure)}{order}), 1, {_s(limit_num)}), {_s(delimiter_text)})"
    return f"string_agg({_s(measure)}, {_s(delimiter_text)}{order})"


def any_value(expression: Any) -> str:
    return f"any_value({_s(expression)})"


def bool_or(expression: Any) -> str:
    return f"bool_or({_s(expression)})"


def cast_bool_to_text(field: Any) -> str:
    return f"cast({_s(field)} as varchar)"


def except_() -> str:
    return "except"


def intersect() -> str:
    return "intersect"


def date(year: Any, month: Any, day: Any) -> str:
    return f"make_date({_s(year)}, {_s(month)}, {_s(day)})"


def array_construct(inputs: list[Any] | None = None, data_type: Any = None) -> str:
    return "[" + ", ".join(_s(i) for i in inputs or []) + "]"


MACROS: dict[str, Callable[..., str]] = {
    name.rstrip("_"): fn for name, fn in list(globals().items())
    if callable(fn) and not name.startswith("_") and name not in {"annotations", "Any", "Callable"}
}
