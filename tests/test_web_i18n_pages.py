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
    # every key sentence, in English. "not due" is the latest day's cell only when that day's deadline has passed
    # before the project existed: between local midnight and the 08:30 deadline the day is "at risk" instead
    # (the build failed) — the time of day decides it, not the translation
    shown = _untranslated(today, TODAY_KEYS)
    assert [k for k in shown if k != "not due"] == [k for k in TODAY_KEYS if k != "not due"]
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


# -- every page reachable from the nav, in Japanese, with no English left over --------------------------------------

# words that are the same in a Japanese page: names of things, units, formats
NOT_ENGLISH = {"kiban", "SQL", "UTC", "CSV", "JSON", "API", "ID", "Asia", "Tokyo", "English", "PII", "KPI", "Parquet",
               "DuckDB", "PostgreSQL", "HTML", "URL", "ms", "min", "s", "h", "KB", "MB", "GB", "OK", "Ctrl", "Enter",
               "Esc", "Tab", "cron", "id", "AM", "PM", "yaml", "yml", "VARCHAR", "BIGINT", "INTEGER", "DOUBLE", "DATE",
               "TIMESTAMP", "BOOLEAN", "DECIMAL", "select", "from", "where", "limit"}
SKIPPED = ("/lang/", "/logout", "/static/", "/api/", "/events", "/deliveries/files/", "/query/history", "/me",
           "/login", "/health", "/today")


def _vocabulary(root: Any) -> set[str]:
    """The project's own words (its data, not the console's): descriptions, owners, names in its files."""
    import yaml

    words: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            words.update(re.findall(r"[A-Za-z]+(?:'[a-z]+)?", value))

    for path in root.rglob("*"):
        if path.suffix in (".yml", ".yaml") and ".kiban" not in path.parts:
            walk(yaml.safe_load(path.read_text(encoding="utf-8")))
        elif path.suffix == ".sql" and ".kiban" not in path.parts:
            words.update(re.findall(r"[A-Za-z]+", path.read_text(encoding="utf-8")))
    return words | {"viewer", "analyst", "operator", "admin", "tests", "bench"}  # user names and token labels


def _leftover_english(html: str, vocabulary: set[str]) -> list[str]:
    """English words a reader sees outside code, data and identifiers."""
    body = html[html.index("<body"):]
    body = re.sub(r"<(script|style|pre|code|kbd|textarea|samp)\b.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r'<(\w+)[^>]*\btranslate="no"[^>]*>.*?</\1>', " ", body, flags=re.S)
    body = re.sub(r'<a [^>]*href="/(assets|runs|jobs|usecases|loads|recipes|forms|initiatives)/[^"]*"[^>]*>.*?</a>',
                  " ", body, flags=re.S)  # links named after what they open (an asset, a run id, a use case)
    seen = " ".join(re.findall(r'(?:title|placeholder|aria-label|alt)="([^"]*)"', body))
    text = re.sub(r"<[^>]+>", " ", body) + " " + seen
    import html as markup

    text = markup.unescape(text)
    found = re.findall(r"(?<![\w.@/:$#=-])[A-Za-z][a-z]*(?:'[a-z]+)?(?![\w.@/:(=-])", text)
    return sorted({w for w in found if w not in NOT_ENGLISH and w not in vocabulary and w.lower() not in vocabulary
                   and len(w) > 1})


def _walk(client: Any, start: str = "/") -> dict[str, str]:
    """Every page of the nav and the first page of each kind it links to (one asset, one run, one use case…)."""
    pages: dict[str, str] = {}
    kinds: set[str] = set()
    queue = [start]
    while queue:
        path = queue.pop(0)
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        pages[path] = answer.text
        for href in re.findall(r'<a [^>]*href="(/[^"#]*)"', answer.text):
            href = href.replace("&amp;", "&")
            if href.startswith(SKIPPED) or href in pages or href in queue:
                continue
            kind = "/".join(href.split("?")[0].split("/")[:2]) + ("/*" * (href.split("?")[0].count("/") - 1))
            if kind in kinds and not _in_nav(answer.text, href):
                continue
            kinds.add(kind)
            queue.append(href)
    return pages


def _in_nav(html: str, href: str) -> bool:
    nav = html[html.index("<nav"):html.index("</nav>")] if "<nav" in html else ""
    return f'href="{href}"' in nav


@pytest.fixture
def every_kind(indexes_template: Any, tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    """The index pages' project (loads, jobs, a model, users) served in-process, signed in as the admin."""
    import shutil

    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = tmp_path / "shop"
    shutil.copytree(indexes_template, root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        sign_in(client, "admin")
        yield client, root


def test_every_page_in_japanese_has_no_english_left(every_kind: Any) -> None:
    client, root = every_kind
    client.cookies.set(i18n.COOKIE, "ja")
    vocabulary = _vocabulary(root)
    pages = _walk(client)
    assert {"/", "/runs", "/incidents", "/graph", "/catalog", "/loads", "/schedule", "/checks", "/models", "/recipes",
            "/console", "/requests", "/forms", "/usage", "/initiatives", "/team", "/users", "/audit"} <= set(pages)
    left = {path: words for path, html in pages.items() if (words := _leftover_english(html, vocabulary))}
    assert left == {}, "\n".join(f"{p}: {' '.join(w)}" for p, w in left.items())


# -- charts: axes and tooltips in the reader's locale and the project's zone, the zone named, UTC on hover ----------

def _svgs(html: str) -> list[str]:
    return re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S)


def test_every_chart_in_japanese_names_the_zone_and_shows_utc_on_hover(every_kind: Any) -> None:
    client, _root = every_kind
    client.cookies.set(i18n.COOKIE, "ja")
    asset = client.get("/assets/warehouse.orders").text
    duration, rows = _svgs(asset)[:2]  # run durations and rows per build
    assert "構築時間（時刻は Asia/Tokyo）" in duration
    assert "行数（時刻は Asia/Tokyo）" in rows
    # the axis in the locale's short date (12月7日), each point's tooltip in JST and UTC
    assert re.search(r">\d{1,2}月\d{1,2}日</text>", duration), duration[:800]
    assert re.search(r">\d{1,2}月\d{1,2}日 \d{1,2}:\d\d</text>", duration)
    assert re.search(r"<title>\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d\d "
                     r"\(\d{4}-\d\d-\d\d \d\d:\d\d UTC\): [\d.]+ 秒</title>",
                     duration), duration
    loads = _svgs(client.get("/loads/lake.erp_products").text)[0]  # rows per load
    assert "取り込みごとの格納行数（時刻は Asia/Tokyo）" in loads
    assert re.search(r"UTC\): 新しい行, 1,999 行を格納</title>", loads)
    assert "UTC): 空, 0 行を格納" in loads
    usecase = client.get("/usecases/morning_sales").text  # SLO history: due days and the budget burning
    bars, burn = _svgs(usecase)[:2]  # due days and the budget, in Japanese, whether a day is due yet or not:
    # the project is new, so a due day exists only when the test runs between local midnight and the deadline
    assert 'aria-label="直近 7 日の期限日' in bars
    assert "直近 7 日の期限日: まだ期限日がありません" in bars or \
        re.search(r"<title>\d{4}年\d{1,2}月\d{1,2}日: [^<a-zA-Z]+</title>", bars), bars
    assert "期間内の未達の累計（許容：0）" in burn
    checks = client.get("/checks").text  # check trends: each result's time on hover, zone named, UTC
    assert re.search(r'title="\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d\d \(Asia/Tokyo; [\d-]+ [\d:]+ UTC\): 不合格"',
                     checks)


def test_charts_in_english_keep_the_zone_label_and_read_the_english_way(every_kind: Any) -> None:
    client, _root = every_kind
    duration = _svgs(client.get("/assets/warehouse.orders", headers={"accept-language": "en"}).text)[0]
    assert "build time (times in Asia/Tokyo)" in duration
    assert re.search(r">[A-Z][a-z]{2} \d{1,2}</text>", duration)  # Dec 7
    assert re.search(r"<title>[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d\u202f[AP]M "
                     r"\([\d-]+ [\d:]+ UTC\): [\d.]+ s</title>",
                     duration), duration


def test_value_over_time_and_initiative_effect_charts_follow_the_locale() -> None:
    from datetime import UTC, date, datetime
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from kiban.web import svg
    from kiban.web.initiative_pages import value_chart

    entries = [SimpleNamespace(measured_at=datetime(2026, 11, d, 23, 0, tzinfo=UTC), per_month=(1234567.0 * d,))
               for d in (1, 15)]
    ja = value_chart(entries, "JPY", "ja", ZoneInfo("Asia/Tokyo"))
    assert "月あたりの測定価値の推移（時刻は Asia/Tokyo）" in ja
    assert ">11月16日 8:00</text>" in ja
    assert "<title>2026年11月2日 8:00 (2026-11-01 23:00 UTC): 1,234,567 JPY</title>" in ja
    effect = svg.effect_chart([(date(2026, 11, d), 10.0 + d, 9.0) for d in range(1, 20)], date(2026, 11, 10), "KPI",
                              lang="ja")
    assert "開始 2026年11月10日" in effect
    assert "実績" in effect
    assert "2026年11月1日" in effect


def test_slo_history_charts_show_due_days_and_verdicts_in_the_locale() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from kiban.web import svg

    days = [("2026-12-05", "met", None), ("2026-12-06", "late", 1800.0), ("2026-12-07", "failed", None)]
    ja = svg.verdict_bars(days, "直近 3 日の期限日", lang="ja")
    assert "<title>2026年12月6日: 遅延 (30 分遅れ)</title>" in ja
    assert ">12月5日</text>" in ja
    assert ">12月7日</text>" in ja
    en = svg.verdict_bars(days, "due days", lang="en")
    assert "<title>Dec 6, 2026: late (30 min late)</title>" in en
    assert ">Dec 5</text>" in en
    tokyo = ZoneInfo("Asia/Tokyo")
    burn = svg.line_chart([(datetime(2026, 12, d, tzinfo=tokyo), float(d > 5)) for d in (5, 6, 7)], "burn", tz=tokyo,
                          lang="ja")
    assert ">12月5日</text>" in burn
    assert ">12月7日 0:00</text>" in burn  # the due days themselves, in JST
    assert "<title>2026年12月6日 0:00 (2026-12-05 15:00 UTC): 1</title>" in burn
    utc_only = svg.line_chart([(datetime(2026, 12, 6, 23, 30, tzinfo=UTC), 2.0)] * 2, "x", lang="en")
    assert "<title>Dec 6, 2026, 11:30\u202fPM UTC: 2</title>" in utc_only  # no zone given: UTC, and said


def test_every_page_of_a_broken_project_in_japanese_has_no_english_left(japanese: Any) -> None:
    """The same walk on the project whose last run failed (a risk on Today, an open incident, a failed run)."""
    client, root, _tokens, _incident = japanese
    sign_in(client, "admin")
    vocabulary = _vocabulary(root)
    pages = _walk(client)
    assert "/incidents/1" in pages
    assert any(p.startswith("/runs/") for p in pages)
    left = {path: words for path, html in pages.items() if (words := _leftover_english(html, vocabulary))}
    assert left == {}, "\n".join(f"{p}: {' '.join(w)}" for p, w in left.items())


# -- what kiban writes and stores (incident timelines, causes): said in the reader's language ------------------------

def _said_incident(root: Any) -> int:
    """An incident whose timeline and cause kiban wrote as parts (kiban.messages), as the SLO service does."""
    from datetime import date

    from kiban.incidents import IncidentDraft, IncidentLog
    from kiban.messages import part, say
    from kiban.project import load_project
    from kiban.slo.cause import cause, said_of
    from kiban.store import Store

    store = Store(load_project(root).state_url)
    try:
        log = IncidentLog(store, "webshop")
        found = cause("failed", "mart.daily_sales", [part("cause.step_failed", asset="mart.daily_sales",
                                                          status="failed", error="Binder Error: no column x")])
        opened = [part("event.failed", deadline="2026-12-01 06:00"), {**said_of(found)[0], "sep": " — "}]
        incident, _ = log.record(IncidentDraft("morning_sales", date(2026, 12, 1), "missed", "failed", say(opened),
                                               root_cause=found, workaround="kiban run +mart.daily_sales",
                                               said=opened))
        told = [part("event.consumers_told", reason=said_of(found))]
        log.note_event(incident.id, "warned", say(told), said=told)
        log.acknowledge(incident.id, actor="operator")
        done = [part("event.repaired", at="07:10", late_s=4200),
                part("event.fixed_by_run", run_id="20261201-0700-ab12", command="kiban run +mart.daily_sales")]
        log.resolve(incident.id, say(done), kind="repaired", said=done)
        return incident.id
    finally:
        store.close()


def _timeline(html: str) -> str:
    return html[html.index('<ol class="timeline">'):html.index("</ol>", html.index('<ol class="timeline">'))]


def test_an_incident_timeline_kiban_wrote_is_said_in_japanese(japanese: Any) -> None:
    client, root, _tokens, _incident = japanese
    sign_in(client, "operator")
    page = client.get(f"/incidents/{_said_incident(root)}").text
    timeline = _timeline(page)
    assert _leftover_english("<body>" + timeline, set()) == []
    assert "期限 2026-12-01 06:00 までに届きませんでした — mart.daily_sales 失敗：" in timeline
    assert "利用者に通知：mart.daily_sales 失敗" in timeline
    assert "修復：データは 07:10 に準備できました（1 時間 10 分 遅れ）。実行 20261201-0700-ab12 で解決" in timeline
    assert "<b>対応開始</b> <span class=\"said\">対応中</span>" in timeline
    assert timeline.count('translate="no"') == 4  # only the engine's error (twice), the command, the actor


def test_the_cause_kiban_wrote_is_said_in_japanese_on_the_incident_page(japanese: Any) -> None:
    client, root, _tokens, _incident = japanese
    sign_in(client, "operator")
    page = client.get(f"/incidents/{_said_incident(root)}").text
    cause = page[page.index('<span class="reason">'):]
    assert cause[:cause.index("</dd>")] == ('<span class="reason">mart.daily_sales 失敗：<span translate="no">'
                                           'Binder Error: no column x</span></span>')


def test_an_incident_timeline_kiban_wrote_reads_as_before_in_english(console: Any) -> None:
    client, root, _tokens, _incident = console
    sign_in(client, "operator")
    timeline = _timeline(client.get(f"/incidents/{_said_incident(root)}").text)
    assert "not delivered by the 2026-12-01 06:00 deadline — mart.daily_sales failed: " in timeline
    assert "repaired: the data was ready at 07:10, 1 h 10 min late; fixed by run 20261201-0700-ab12 (" in timeline


def test_a_timeline_entry_written_before_parts_stays_as_written_and_marked(japanese: Any) -> None:
    client, _root, _tokens, incident = japanese
    sign_in(client, "operator")
    timeline = _timeline(client.get(f"/incidents/{incident}").text)
    assert '<span translate="no">not delivered by the deadline</span>' in timeline


def test_todays_cause_line_without_a_broken_asset_is_said_in_the_readers_language(console: Any) -> None:
    """A use case late today with nothing broken (the cause is the SLO status line, e.g. "12 min late"): the risk
    carries the line as parts, and Today says it in Japanese."""
    from kiban.messages import part
    from kiban.web import fixes
    from kiban.web import models as m

    client = console[0]
    site = client.app.state.site
    result = site.assessment()
    name = next(iter(site.project.usecases))
    late = m.UseCaseStatus(name=name, description="", verdict="late", due_date=result.today, deadline=None,
                           estimated_finish=None, at_risk=False, detail="12 min late",
                           detail_said=[part("status.late_min", minutes=12)], attainment=None, target=0.9,
                           budget_allowed=1, budget_left=0, burn_rate=None)
    risk = fixes.todays_risks(site, result, [late], {}, [])[0]
    assert (risk.cause, risk.cause_said) == ("12 min late", [{"kind": "status.late_min", "minutes": 12}])
    env = client.app.state.templates.env
    line = env.from_string("{{ r.cause_said|say }}").render(r=risk, _=i18n.gettext("ja"), lang="ja")
    assert line == "12 分遅れ"


def test_a_drafted_postmortem_timeline_is_said_in_japanese(japanese: Any) -> None:
    client, root, _tokens, _incident = japanese
    sign_in(client, "operator")
    page = client.get(f"/incidents/{_said_incident(root)}/postmortem").text
    timeline = _timeline(page)
    assert _leftover_english("<body>" + timeline, set()) == []
    assert "修復：データは 07:10 に準備できました（1 時間 10 分 遅れ）" in timeline
