"""Sentences kiban stores as parts (kind + parameters): the same English as before for the CLI, every kind in the
console's Japanese catalog with the same parameters, and HTML that marks what is said as written."""

from __future__ import annotations

import re
from typing import Any

import pytest
from markupsafe import Markup

from kiban.messages import MESSAGES, part, say, span, text
from kiban.web import i18n

SAMPLE: dict[str, Any] = {"asset": "mart.daily_sales", "at": "05:10", "expected": "04:30", "overdue_s": 2400,
                          "how": {"kind": "how.learned", "n": 12}, "reach": "2026-12-05", "needed": "2026-12-06",
                          "n": 12, "cost_s": 600, "took_s": 1250, "usual_s": 300, "p90_s": 420, "extra_s": 950,
                          "waited_s": 90, "started": "05:00", "behind_s": 1800, "checks": "mart.x:not_null(id)",
                          "status": "failed", "error": "Binder Error: column x", "since": "00:00", "by": "05:30",
                          "queued_s": 120, "threads": 2, "late_s": 700, "early_s": 300, "deadline": "12-07 06:00",
                          "through": "2026-12-06", "p50": "05:50", "p90": "06:20", "run_id": "20261207-0500-ab12",
                          "command": "kiban run +mart.daily_sales", "minutes": 12,
                          "reason": [{"kind": "cause.slow", "asset": "mart.daily_sales"}], "text": "as written",
                          "usecase": "morning_sales", "successor": "store_morning", "day": "2026-12-07",
                          "verdict": "pending"}
KINDS = sorted(k for k in MESSAGES if k != "text")


def _placeholders(template: str) -> list[str]:
    return sorted(re.findall(r"\{(\w+)\}", template))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_in_the_japanese_catalog_with_the_same_parameters(kind: str) -> None:
    translated = i18n.messages("ja").get(MESSAGES[kind])
    assert translated is not None, f"{kind}: {MESSAGES[kind]!r} is not in ja.po"
    assert _placeholders(translated) == _placeholders(MESSAGES[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_said_in_japanese_leaves_no_english_word_but_its_parameters(kind: str) -> None:
    said = say([part(kind, **SAMPLE)], i18n.gettext("ja"), "ja")
    for value in ("Binder Error: column x", "kiban run +mart.daily_sales", "expected_by", "mart.x:not_null(id)"):
        said = said.replace(value, " ")
    assert re.findall(r"(?<![\w.:+-])[A-Za-z]{2,}(?![\w.:(-])", said) == [], said


def test_english_is_the_sentence_kiban_always_wrote() -> None:
    said = [part("event.expected_after", p50="05:10", p90="05:40", late_s=700, deadline="12-07 05:00"),
            part("cause.was_slow", asset="mart.x", took_s=1200), part("cause.usually", " ", usual_s=300),
            part("event.revised", " ")]
    assert say(said) == ("at risk: expected ready at 05:10 (up to 05:40), about 12 min after the 12-07 05:00 "
                         "deadline; mart.x was slow: took 20 min (usually 5 min) (revised)")


def test_a_cause_inside_an_event_is_said_in_the_same_language() -> None:
    said = [part("event.consumers_told", reason=[part("cause.step_failed", asset="mart.x", status="failed",
                                                      error="Binder Error")])]
    assert say(said, i18n.gettext("ja"), "ja") == "利用者に通知：mart.x 失敗：Binder Error"


def test_japanese_joins_parts_with_its_own_punctuation() -> None:
    said = [part("event.recovered", at="05:00"), part("event.fixed_by_run", run_id="r1", command="kiban run --resume")]
    assert say(said, i18n.gettext("ja"), "ja") == \
        "期限前に回復：データは 05:00 に準備できました。実行 r1 で解決（kiban run --resume）"


def test_durations_in_japanese() -> None:
    assert [span(s, "ja") for s in (5, 250, 1800, 7500)] == ["5.0 秒", "4 分 10 秒", "30 分", "2 時間 05 分"]


def test_html_escapes_parameters_and_marks_errors_as_said_as_written() -> None:
    said = say([part("cause.step_failed", asset="<b>x</b>", status="failed", error="a < b")], i18n.gettext("ja"),
               "ja", markup=Markup)
    assert said == '&lt;b&gt;x&lt;/b&gt; 失敗：<span translate="no">a &lt; b</span>'


def test_a_sentence_without_a_kind_and_an_unknown_kind_are_shown_as_written() -> None:
    assert say([text("note by a person"), {"kind": "from.a.newer.kiban", "text": "hello"}]) == \
        "note by a person; hello"


def test_an_unknown_kind_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="unknown message kind"):
        part("no.such.kind")
