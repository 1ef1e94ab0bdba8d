"""The error for dbt's Jinja (``{{ ref('x') }}``, ``{% if %}``) pasted into a kiban model.

Without this, SQLGlot answers "Expected table name but got <L_BRACE" and nobody knows why. The
scan skips string literals, quoted identifiers and comments, so ``'{{'`` inside a string is not
flagged; it only runs when the text holds ``{{``, ``{%`` or ``{#`` at all, so it costs nothing on
ordinary SQL.
"""

from __future__ import annotations

import re
from pathlib import Path

from kiban.errors import Location, ProjectError

IMPORT_HINT = "to convert a whole dbt project, run `kiban import dbt DBT_FOLDER NEW_FOLDER`"
_ADVICE = (
    (re.compile(r"\bref\s*\(\s*['\"](\w+)['\"]"), "write the table's name instead, `from {0}` "
     "(or with its layer, e.g. `warehouse.{0}`): kiban finds dependencies in the SQL itself"),
    (re.compile(r"\bsource\s*\(\s*['\"](\w+)['\"]\s*,\s*['\"](\w+)['\"]"), "write the lake table's name instead, "
     "e.g. `from lake.{0}_{1}`"),
    (re.compile(r"\bis_incremental\b"), "kiban models have no incremental branch: set `materialized: incremental` "
     "and `time_column:` in the sidecar and keep the SQL plain"),
    (re.compile(r"\bconfig\s*\("), "settings live in the sidecar NAME.yml next to the SQL (materialized, tags, "
     "description)"),
    (re.compile(r"\b(var|env_var)\s*\("), "kiban models are plain SQL with no variables; write the value"),
    (re.compile(r"{%-?\s*(for|if|set|macro)\b"), "kiban models are plain SQL without templating; write the SQL "
     "out, or keep reusable logic in a warehouse model"),
)


def _template_start(sql: str) -> int | None:
    """Offset of the first ``{{``, ``{%`` or ``{#`` outside strings, quoted names and comments."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:  # '' and "" escape themselves
                end = sql.find(c, end + 2)
            if end == -1:
                return None
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif c == "{" and i + 1 < n and sql[i + 1] in "{%#":
            return i
        else:
            i += 1
    return None


def refuse_templating(sql: str, path: Path) -> None:
    """Raise a :class:`ProjectError` at the first Jinja tag in a model's SQL, saying what kiban does instead."""
    if "{{" not in sql and "{%" not in sql and "{#" not in sql:
        return
    start = _template_start(sql)
    if start is None:
        return
    line = sql.count("\n", 0, start) + 1
    column = start - (sql.rfind("\n", 0, start) + 1) + 1
    close = {"{": "}}", "%": "%}", "#": "#}"}[sql[start + 1]]
    end = sql.find(close, start)
    tag = sql[start:end + 2] if end != -1 else sql[start:start + 40]
    advice = "kiban models are plain DuckDB SQL, rendered by nobody"
    for pattern, text in _ADVICE:
        match = pattern.search(tag)
        if match:
            advice = text.format(*match.groups())
            break
    raise ProjectError(f"Jinja templating is not SQL: {' '.join(tag.split())[:80]}", Location(path, line, column),
                       f"{advice}; {IMPORT_HINT}")
