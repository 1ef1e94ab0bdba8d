"""The console in English and Japanese: which language a request gets, its messages, its number format.

The language is the reader's choice (the *English / 日本語* links in the footer set a cookie), else the best match
of the browser's ``Accept-Language`` among the console's languages (Babel's ``negotiate_locale``), else English.
Messages live in gettext catalogs, ``kiban/web/locale/<lang>.po`` — the format translators and their tools
know — read once with Babel (no compile step: nothing to forget at release). A message a catalog lacks is shown
in English. Numbers are formatted for the locale by Babel (grouping, decimal sign); the templates right-align
them (``td.num``). Dates and times use the locale's own CLDR patterns through Babel (en "Dec 7, 2026, 8:30 AM",
ja "2026年12月7日 8:30"), always in the project's time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from babel.core import Locale, negotiate_locale
from babel.dates import format_date, format_datetime, get_datetime_format
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, get_decimal_symbol, get_group_symbol
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.responses import RedirectResponse, Response

LANGS = ("en", "ja")
COOKIE = "kiban_lang"
HERE = Path(__file__).parent / "locale"
router = APIRouter(include_in_schema=False)


def choose(request: Request) -> str:
    """The request's language: the cookie the reader set, else the browser's preference, else English."""
    chosen = request.cookies.get(COOKIE, "")
    if chosen in LANGS:
        return chosen
    wanted = [part.split(";")[0].strip() for part in request.headers.get("accept-language", "").split(",")]
    found = negotiate_locale([w for w in wanted if w and w != "*"], list(LANGS), sep="-")
    return found if found in LANGS else "en"


@lru_cache(maxsize=len(LANGS))
def messages(lang: str) -> dict[str, str]:
    """The catalog of ``lang`` as {English: translation}; empty for English."""
    path = HERE / f"{lang}.po"
    if lang == "en" or not path.exists():
        return {}
    with path.open("rb") as f:
        catalog = read_po(f, locale=lang)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string and not m.fuzzy}


def gettext(lang: str) -> Callable[[str], str]:
    table = messages(lang)

    def translate(text: str) -> str:
        return table.get(text, text)

    return translate


@lru_cache(maxsize=8)
def _symbols(lang: str) -> tuple[str, str]:
    return get_group_symbol(locale=lang), get_decimal_symbol(locale=lang)


def number(value: float | None, lang: str) -> str:
    """A number for reading: grouped, at most three decimals (1,528,380 · 0.013), in the reader's locale.
    Babel's symbols for the locale, Python's formatting: a table of 1,000 numbers must not cost milliseconds."""
    if value is None:
        return "–"
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        return format_decimal(value, locale=lang)
    group, point = _symbols(lang)
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.3f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text if (group, point) == (",", ".") else text.replace(",", "\0").replace(".", point).replace("\0", group)


# The templates ask for a time with a strftime format saying which parts to show; each maps to the locale's pattern
# for those parts (a CLDR skeleton for the date, the locale's short or medium time).
_DATE_PARTS = {"%Y-%m-%d": "yMMMd", "%m-%d": "MMMd", "%a %m-%d": "MMMEd", "%a %Y-%m-%d": "yMMMEd", "%d": "d"}
_TIME_PARTS = {"%H:%M": "short", "%H:%M:%S": "medium"}


@lru_cache(maxsize=128)
def time_pattern(fmt: str, lang: str) -> str | None:
    """The Babel pattern showing the parts ``fmt`` (a strftime format) shows, for ``lang``; None when ``fmt`` is
    not one the console uses (the caller then keeps strftime)."""
    locale = Locale.parse(lang)
    head, sep, clock = fmt.partition("%H")
    head, clock = head.strip(), (sep + clock).strip()
    if (head and head not in _DATE_PARTS) or (clock and clock not in _TIME_PARTS) or not (head or clock):
        return None
    day = str(locale.datetime_skeletons[_DATE_PARTS[head]].pattern) if head else ""
    hour = str(locale.time_formats[_TIME_PARTS[clock]].pattern) if clock else ""
    if day and hour:
        return str(get_datetime_format("medium", locale=locale)).replace("{1}", day).replace("{0}", hour)
    return day or hour


def when(value: datetime, fmt: str, lang: str, zone: tzinfo) -> str:
    """``value`` (aware) in ``zone`` with the parts ``fmt`` names, in the reader's locale (Dec 7, 8:30 AM ·
    12月7日 8:30)."""
    pattern = time_pattern(fmt, lang)
    if pattern is None:
        return value.astimezone(zone).strftime(fmt)
    return format_datetime(value, pattern, tzinfo=zone, locale=lang)


def day(value: date | str | None, lang: str, long: bool = True) -> str:
    """A calendar day for reading (Dec 7, 2026 · 2026年12月7日); short drops the year."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        text = value
        try:
            value = date.fromisoformat(text)
        except ValueError:
            return text
    if isinstance(value, datetime):
        value = value.date()
    return format_date(value, time_pattern("%Y-%m-%d" if long else "%m-%d", lang) or "medium", locale=lang)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.get("/lang/{lang}")
def set_language(lang: Annotated[str, PathParam(max_length=5)],
                 next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """Remember the reader's language (a year) and go back to the page they were on."""
    response = RedirectResponse(_safe_next(next), status_code=303)
    if lang in LANGS:
        response.set_cookie(COOKIE, lang, max_age=365 * 86400, samesite="lax", httponly=True)
    return response
