"""Today and the incident pages in Japanese, through the app (no browser): every key sentence is translated,
dates and times follow the locale (2026年12月7日 · 12月7日 8:30), the ISO time stays in ``datetime=``; English is
unchanged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from kiban.web import i18n
from tests.helpers.console import sign_in

TODAY_KEYS = ["use case ready", "at risk", "times in", "Who is hurt", "Since", "Cause", "History and budgets",
              "latest day", "budget left", "recent misses", "not due", "This starts", "It will build", "Yes, start it",
              "open incident"]
INCIDENT_KEYS = ["Use case", "What happened", "Who is hurt", "Workaround", "Postmortem", "draft so far",
                 "Resume: build", "This starts", "Yes, start it", "You will see the run", "Resolve with a note",
                 "Acknowledge: I am on it", "Other actions", "Backfill", "Timeline", "due"]
INCIDENTS_KEYS = ["Open", "Resolved", "due", "fix:", "root cause", "None yet."]
ISO_TIME = r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">'


def _main(page: str) -> str:
    return page[page.index("<main"):page.index("</main>")]


def _untranslated(main: str, keys: list[str]) -> list[str]:
    text = re.sub(r"<[^>]+>", " ", main)  # what is read, not markup (attributes keep their own checks)
    text = re.sub(r"<code>.*?</code>", " ", text)
    return [k for k in keys if re.search(rf"(?<![A-Za-z]){re.escape(k)}(?![a-z])", text)]


@pytest.fixture
def japanese(console: Any) -> Iterator[Any]:
    client = console[0]
    client.cookies.set(i18n.COOKIE, "ja")
    try:
        yield console
    finally:
        client.cookies.delete(i18n.COOKIE)


def test_today_and_incidents_in_japanese_have_no_english_sentence_and_ja_dates(japanese: Any) -> None:
    client, _root, _tokens, incident = japanese
    sign_in(client, "operator")
    today = _main(client.get("/").text)
    assert _untranslated(today, TODAY_KEYS) == []
    assert re.search(r'id="headline">1 件中 0 件のユースケースが準備完了 · 1 件にリスクあり</h1>', today), today[:600]
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 · 時刻は Asia/Tokyo", today)  # today's date, the Japanese way
    assert re.search(ISO_TIME + r"\d{1,2}月\d{1,2}日 \d{1,2}:\d\d</time>", today)  # machine value kept
    assert "影響を受ける人" in today
    assert "はい、開始します" in today
    assert "mart.daily_sales を再構築" in today
    page = _main(client.get(f"/incidents/{incident}").text)
    assert _untranslated(page, INCIDENT_KEYS) == []
    assert f"インシデント #{incident}" in page
    assert "回避策" in page
    assert "前回の実行で未完了の 1 件を構築" in page
    assert re.search(ISO_TIME + r"\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d\d</time>", page)  # opened at
    assert re.search(r"期限 \d{4}年\d{1,2}月\d{1,2}日", page)  # the due day
    listing = _main(client.get("/incidents").text)
    assert _untranslated(listing, INCIDENTS_KEYS) == []
    assert "未解決" in listing


def test_english_pages_are_unchanged(console: Any) -> None:
    client, _root, _tokens, incident = console
    sign_in(client, "operator")
    today = _main(client.get("/", headers={"accept-language": "en-US,en;q=0.9"}).text)
    assert not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", today)
    assert _untranslated(today, TODAY_KEYS) == TODAY_KEYS  # every key sentence, in English
    assert 'id="headline">0 of 1 use case ready · 1 at risk</h1>' in today
    assert re.search(ISO_TIME + r"[A-Z][a-z]{2} \d{1,2}, \d{1,2}:\d\d\u202f[AP]M</time>", today)
    page = _main(client.get(f"/incidents/{incident}").text)
    assert not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", page)
    assert _untranslated(page, INCIDENT_KEYS) == INCIDENT_KEYS
    assert re.search(r"due [A-Z][a-z]{2} \d{1,2}, \d{4}", page)


def test_a_browser_asking_for_japanese_gets_it_without_the_cookie(console: Any) -> None:
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/incidents", headers={"accept-language": "ja-JP,ja;q=0.9,en;q=0.5"}).text
    assert "<h1>インシデント</h1>" in page
    assert "<title>インシデント · kiban" in page


def test_runs_and_catalog_in_japanese(japanese: Any) -> None:
    client, _root, _tokens, _incident = japanese
    sign_in(client, "operator")
    runs = _main(client.get("/runs").text)
    assert _untranslated(runs, ["Resume the last run", "started", "took", "selection", "no runs yet"]) == []
    assert "前回の実行を再開" in runs
    assert "所要時間" in runs
    assert re.search(ISO_TIME + r"\d{1,2}月\d{1,2}日 \d{1,2}:\d\d:\d\d</time>", runs)
    catalog = _main(client.get("/catalog").text)
    assert _untranslated(catalog, ["Find", "Layer", "Owner", "Filter", "last built", "anyone"]) == []
    assert "<h1>カタログ" in catalog
    assert "最終構築" in catalog


def test_time_formats_follow_the_locale_in_the_project_zone_and_odd_input_passes_through() -> None:
    from datetime import UTC, date, datetime
    from zoneinfo import ZoneInfo

    late = datetime(2026, 12, 6, 23, 30, 5, tzinfo=UTC)  # already the 7th in Tokyo
    tokyo = ZoneInfo("Asia/Tokyo")
    assert i18n.when(late, "%Y-%m-%d %H:%M", "ja", tokyo) == "2026年12月7日 8:30"
    assert i18n.when(late, "%Y-%m-%d %H:%M", "en", tokyo) == "Dec 7, 2026, 8:30\u202fAM"
    assert i18n.when(late, "%a %m-%d %H:%M", "ja", tokyo) == "12月7日(月) 8:30"
    assert i18n.when(late, "%H:%M:%S", "en", ZoneInfo("America/New_York")) == "6:30:05\u202fPM"
    assert i18n.when(late, "%Y week %W", "ja", tokyo) == "2026 week 49"  # a format the console does not map: strftime
    assert i18n.day(date(2026, 12, 7), "ja") == "2026年12月7日"
    assert i18n.day("2026-12-07", "en", False) == "Dec 7"
    assert i18n.day("not a day <b>", "ja") == "not a day <b>"
    assert i18n.day(None, "en") == "–"
