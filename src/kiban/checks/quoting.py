"""SQL text kiban writes itself: quoted identifiers, escaped literals, relation names.

Everything a user declares that ends up in SQL passes through here, except the SQL of ``expression`` and
``sql`` checks, which is parsed and rendered back by SQLGlot (``kiban.checks.suite``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from kiban.quoting import quote


def literal(value: Any, text: bool = False) -> str:
    """A SQL literal for a value from YAML; ``text``: compare with a text column, so spell it as text."""
    if text and not isinstance(value, str):
        value = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo else "TIMESTAMP"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def relation_name(key: str) -> str:
    """``warehouse.orders`` → ``"warehouse"."orders"``."""
    layer, name = key.split(".", 1)
    return f"{quote(layer)}.{quote(name)}"


def split_relation(relation: str) -> tuple[str | None, str]:
    """``"warehouse"."orders"`` (or ``warehouse.orders``) → ("warehouse", "orders")."""
    parts: list[str] = []
    i = 0
    while i < len(relation):
        if relation[i] == '"':
            j, word = i + 1, ""
            while j < len(relation):
                if relation[j] == '"':
                    if relation[j + 1:j + 2] == '"':
                        word, j = word + '"', j + 2
                        continue
                    break
                word, j = word + relation[j], j + 1
            parts.append(word)
            i = j + 2  # past the closing quote and the dot
        else:
            end = relation.find(".", i)
            end = len(relation) if end < 0 else end
            parts.append(relation[i:end])
            i = end + 1
    return (parts[-2] if len(parts) > 1 else None), parts[-1]
