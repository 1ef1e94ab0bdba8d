"""What the SQL console's editor needs: the schema the person may query, for the sidebar and for completion.

Every published asset is readable in the console (one read-only ``SELECT``); a PII column (declared, or computed
from one) is listed with a mark — masked for a person without clearance, shown (and recorded) for one with it.
The editor itself is ``static/sql_editor.js``: a textarea kept as it is (forms, history, no-script all work),
plus completion of table and column names and Ctrl+Enter (⌘+Enter) to run. Why not CodeMirror: the console
needs three behaviours, not an editor framework (~400 KB built, and a build step to keep up); a 150-line script
that only reads the schema below does them and keeps the page's one-script-per-job rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from kiban.web import catalog_views as cv
from kiban.web import i18n
from kiban.web.views import Site

SCHEMA_TTL = 300.0
SQL_WORDS = ("select", "from", "where", "group by", "order by", "having", "limit", "join", "left join", "on",
             "as", "and", "or", "not", "in", "between", "like", "ilike", "distinct", "count(*)", "sum(", "avg(",
             "min(", "max(", "case when", "then", "else", "end", "with", "union all", "date_trunc(", "desc", "asc",
             "is null", "is not null", "cast(", "coalesce(", "over (", "partition by", "qualify")


@dataclass(frozen=True)
class Table:
    key: str
    layer: str
    description: str
    columns: tuple[tuple[str, str, bool], ...]  # (name, type, PII)


def schema(site: Site) -> list[Table]:
    """Every published asset and its columns, by layer then name (shared for a few minutes)."""
    def build() -> list[Table]:
        docs = cv.dictionary(site).assets
        order = {"lake": 0, "warehouse": 1, "mart": 2}
        return [Table(d.key, d.layer, d.description.split("\n")[0][:140],
                      tuple((c.name, _plain_type(c.type), c.pii) for c in d.columns))
                for d in sorted(docs.values(), key=lambda d: (order.get(d.layer, 3), d.key))]

    found: list[Table] = site.cached("console:schema", SCHEMA_TTL, build)
    return found


def _plain_type(kind: str | None) -> str:
    """The type in words a business reader knows (HUGEINT is a whole number)."""
    if not kind:
        return ""
    upper = kind.upper()
    if upper in ("HUGEINT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "INT", "INT64"):
        return "whole number"
    if upper.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL", "NUMERIC")):
        return "number"
    if upper in ("VARCHAR", "TEXT", "STRING"):
        return "text"
    if upper == "DATE":
        return "date"
    if upper.startswith("TIMESTAMP"):
        return "date and time"
    if upper == "BOOLEAN":
        return "yes/no"
    return kind.lower()


def sidebar(site: Site, clearance: bool, lang: str = "en") -> Markup:
    """The schema list of the sidebar, drawn once for everyone (per clearance and language) — 1,000 tables are
    3,000 lines."""
    def build() -> Markup:
        _ = i18n.gettext(lang)
        mark = "PII" if clearance else _("masked")
        why = _("personal data: shown to you and recorded" if clearance else "personal data: values come back masked")
        parts = []
        for t in schema(site):
            key = escape(t.key)
            cols = "".join(
                f'<li data-column="{escape(n)}"><button type="button" class="link ins" translate="no" '
                f'data-insert="{escape(n)}">'
                f'{escape(n)}</button> <span class="muted small">{escape(_(k))}</span>'
                + (f' <span class="pill s-pii masked-col" title="{why}">{mark}</span>' if p else "") + "</li>"
                for n, k, p in t.columns)
            parts.append(f'<details data-table="{key}"><summary><button type="button" class="link ins" translate="no" '
                         f'data-insert="{key}">{key}</button> <span class="muted small">{len(t.columns)}</span>'
                         f'</summary><ul>{cols}</ul></details>')
        return Markup("".join(parts))

    found: Markup = site.cached(f"console:sidebar:{clearance}:{lang}", SCHEMA_TTL, build)
    return found


def completion_json(site: Site) -> str:
    """The editor's word list: tables with their columns, and SQL words (safe inside a <script> element)."""
    return site.cached("console:completion", SCHEMA_TTL, lambda: _completion(schema(site)))


def _completion(tables: list[Table]) -> str:
    data = {"tables": {t.key: [[n, k, p] for n, k, p in t.columns] for t in tables}, "words": SQL_WORDS}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
