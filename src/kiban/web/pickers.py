"""Recipe parameter pickers from the data: a parameter with ``values_from: warehouse.orders.store`` is offered
the column's distinct values (up to :data:`MAX_VALUES`, read through the query console — sandboxed, masked — and
shared for a few minutes), and a recipe that answers no rows says when a value given is not one of them.

A personal-data column offers nothing: its values would come back masked, and listing them would leak them.
"""

from __future__ import annotations

import logging
from typing import Any

from kiban.catalog.usage import Actor
from kiban.errors import KibanError
from kiban.quoting import quote, relation
from kiban.web import catalog_views as cv
from kiban.web.views import Site

log = logging.getLogger("kiban.web")
MAX_VALUES = 200
TTL = 300.0


def values(site: Site, source: str) -> list[str]:
    """The distinct values of ``asset.column`` (as text, sorted), or none when they cannot or must not be shown."""
    def read() -> list[str]:
        layer, table, column = source.split(".")
        sql = (f"select distinct {quote(column)} as v from {relation(f'{layer}.{table}')} where {quote(column)} "
               f"is not null order by 1 limit {MAX_VALUES}")
        try:
            result = cv.console(site).run(sql, Actor("kiban-picker"), limit=MAX_VALUES, timeout=10.0, record=False)
        except KibanError as exc:
            log.info("web: no picker for %s: %s", source, exc)
            return []
        if result.masked:
            return []
        return [str(row[0]) for row in result.rows]

    found: list[str] = site.cached(f"picker:{source}", TTL, read)
    return found


def for_recipe(site: Site, params: list[Any]) -> dict[str, list[str]]:
    return {p.name: values(site, p.values_from) for p in params if getattr(p, "values_from", None)}


def empty_hint(params: list[Any], given: dict[str, str], offered: dict[str, list[str]]) -> str | None:
    """Why a recipe may have answered nothing: a value that is not among its column's values."""
    for p in params:
        choices = offered.get(p.name)
        value = given.get(p.name, "")
        if choices and value and value not in choices:
            sample = ", ".join(choices[:8]) + (" …" if len(choices) > 8 else "")
            return f"No rows: '{value}' is not a value of {p.values_from} (it has {sample}). Pick one from the list."
    return None
