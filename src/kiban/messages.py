"""Sentences kiban writes about the data and stores (incident timelines, causes), kept as *kind + parameters*.

A service says a sentence as a list of parts, each ``{"kind": <key of MESSAGES>, <param>: <value>, ...}``, and
stores the parts beside the English text it always wrote (the CLI and old readers keep that text). A front end
renders the parts in its reader's language with :func:`say`: each part's template goes through the reader's
catalog (the English template is the msgid, as for every console message), then is filled with its parameters:

- a parameter named ``*_s`` is a duration in seconds, written by :func:`span` in the reader's language;
- ``status`` and ``verdict`` are status words, translated too;
- a list of parts (a cause inside an event) is said the same way, recursively;
- anything else (asset names, times already in the project's zone, engine errors) is shown as it is.

Parts are joined by ``"; "`` unless a part names its own separator (``"sep"``); in Japanese by ``。``, ``、``.
The kind ``text`` is a sentence that has no kind (an older row, a person's note): it is shown as written.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

Part = dict[str, Any]

MESSAGES: dict[str, str] = {
    "text": "{text}",
    # causes (kiban.slo.cause, kiban.slo.watch)
    "cause.source_arrived": "{asset} arrived at {at}, {overdue_s} after its expected {expected} {how}",
    "cause.source_missing": "{asset} had not arrived, {overdue_s} after its expected {expected} {how}",
    "cause.source_overdue": "{asset} has not delivered: expected by {expected} {how}, {overdue_s} overdue",
    "cause.source_stale": "its data reaches only {reach} (needed {needed})",
    "cause.read_before_day_end": "{asset} was last read at {read}, before {through} was over: the data holds "
                                 "only part of that day",
    "how.declared": "(declared expected_by {at})",
    "how.learned": "(learned from {n} loads)",
    "cause.repaired_later": "repaired {cost_s} later",
    "cause.slow_took": "{asset} took {took_s}, usually {usual_s} (p90 {p90_s}): {extra_s} longer",
    "cause.queued": "{asset} waited {waited_s} for a free thread after its inputs were ready (started {started})",
    "cause.late_start": "the run started at {at}, {behind_s} later than usual",
    "cause.check_failed_on": "blocking check failed on {asset}: {checks}",
    "cause.check_failed": "blocking check failed: {checks}",
    "cause.first_bad_upstream": "the first bad upstream is {asset} ({checks})",
    "cause.step_failed": "{asset} {status}: {error}",
    "cause.not_started": "no run has started {asset} since {since}; it must start by {by} to be on time "
                         "(scheduler down, lock, waiting)",
    "cause.still_running": "{asset} is still running: not published since {since}",
    "cause.not_built": "no run has built {asset} since {since}: the nightly run did not start (scheduler, lock)",
    "cause.waits_for_thread": "{asset} and the steps after it wait {queued_s} for a free thread ({threads} "
                              "thread(s))",
    "cause.was_slow": "{asset} was slow: took {took_s}",
    "cause.is_slow": "{asset} is slow, running for {took_s}",
    "cause.slow": "{asset} is slow",
    "cause.usually": "(usually {usual_s})",
    # incident timeline events (kiban.slo.service, kiban.slo.watch, kiban.incidents)
    "event.late": "delivered {late_s} after the {deadline} deadline",
    "event.failed": "not delivered by the {deadline} deadline",
    "event.incomplete": "delivered by {deadline} but the data does not reach {through}",
    "event.bad_data": "delivered, but a blocking check failed: {checks}",
    "event.at_risk": "at risk of missing the {deadline} deadline",
    "event.blocked": "at risk: {reason}, so the data cannot be ready by {deadline}",
    "event.expected_after": "at risk: expected ready at {p50} (up to {p90}), about {late_s} after the {deadline} "
                            "deadline",
    "event.expected_before": "at risk: expected ready at {p50} (up to {p90}), about {early_s} before the {deadline} "
                             "deadline",
    "event.revised": "(revised)",
    "event.recovered": "recovered before the deadline: the data was ready at {at}",
    "event.repaired": "repaired: the data was ready at {at}, {late_s} late",
    "event.fixed_by_run": "fixed by run {run_id} ({command})",
    "event.delivered": "delivered",
    "event.consumers_told": "consumers told: {reason}",
    "event.consumers_told_at_risk": "consumers told: at risk",
    "event.acknowledged": "acknowledged",
    # closed by kiban without a delivery (kiban.slo.retire): never worded as a recovery
    "event.retired": "closed: use case {usecase} is no longer defined in the project (not a recovery: nothing was "
                     "delivered)",
    "event.retired_successor": "{successor} has the same assets and deadline (renamed?): it is judged on its own "
                               "from its next due day",
    "event.not_due": "closed: {day} is no longer a due day of {usecase} under its current definition (not a "
                     "recovery)",
    "event.redefined": "closed: the service level of {usecase} was changed, and by its current definition the day "
                       "is {verdict} (not a recovery)",
    "event.redefined_unjudged": "closed: the service level of {usecase} was changed, and its current definition "
                                "does not judge the day (not a recovery)",
    "event.reopened": "reopened: use case {usecase} is defined again and in breach",
    # the SLO status line (kiban.web.views)
    "status.late_min": "{minutes} min late",
    "status.step": "{asset} {status}",
    "status.blocked_by": "blocked by {asset}",
    "status.slow_at_risk": "at risk: {asset} is slow",
}

TRANSLATED = ("status", "verdict")  # parameters that are status words: said in the reader's language
VERBATIM = ("error", "text", "command")  # said as written, in no language of ours (an engine's error, a command)


def part(kind: str, sep: str | None = None, **params: Any) -> Part:
    """One part of a sentence; ``sep`` joins it to the part before (``"; "`` when not given)."""
    if kind not in MESSAGES:
        raise ValueError(f"unknown message kind {kind!r}")
    found: Part = {"kind": kind, **params}
    if sep is not None:
        found["sep"] = sep
    return found


def text(sentence: str, sep: str | None = None) -> Part:
    """A sentence without a kind (shown as written, in the language it was written in)."""
    return part("text", sep, text=sentence)


def span(seconds: float, lang: str = "en") -> str:
    """A duration with its real precision: ``20 s``, ``4 min 10 s``, ``2 h 05 min`` (ja ``4 分 10 秒``)."""
    unit = {"s": " 秒", "min": " 分", "h": " 時間"} if lang == "ja" else {"s": " s", "min": " min", "h": " h"}
    seconds = abs(seconds)
    if seconds < 60:
        return (f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}") + unit["s"]
    if seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}{unit['min']}" + (f" {rest}{unit['s']}" if rest else "")
    if seconds < 3600:
        return f"{round(seconds / 60)}{unit['min']}"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours}{unit['h']}" + (f" {minutes:02d}{unit['min']}" if minutes else "")


def _identity(message: str) -> str:
    return message


def say(parts: list[Part] | Part | None, gettext: Callable[[str], str] = _identity, lang: str = "en",
        markup: Callable[[str], str] | None = None) -> str:
    """The sentence of ``parts`` in the reader's language (English with the default ``gettext``).

    With ``markup`` (``markupsafe.Markup``) the sentence is HTML: parameters are escaped, and the ones said as
    written (an engine's error, a sentence without a kind) are marked ``translate="no"``."""
    if parts is None:
        return ""
    if isinstance(parts, dict):
        parts = [parts]
    make = markup or str
    out = make("")
    for i, found in enumerate(parts):
        kind = str(found.get("kind", "text"))
        template = MESSAGES.get(kind, "{text}")  # a kind this version does not know: its text if it has one
        template = template if kind == "text" or kind not in MESSAGES else gettext(template)
        said = make(template).format(**{name: _param(name, found.get(name), gettext, lang, markup)
                                        for name in _names(template)})
        if i:
            out += _sep(str(found.get("sep", "; ")), lang)
        out += said
    return out


SEPARATORS = {"ja": {"; ": "。", ", ": "、", " ": ""}}  # how parts are joined in each language (English: as given)


def _sep(sep: str, lang: str) -> str:
    return SEPARATORS.get(lang, {}).get(sep, sep)


def _names(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _param(name: str, value: Any, gettext: Callable[[str], str], lang: str,
           markup: Callable[[str], str] | None) -> str:
    if isinstance(value, list | dict):
        return say(value, gettext, lang, markup)
    if value is None:
        return "–"
    if name in VERBATIM and markup is not None:
        return markup('<span translate="no">{}</span>').format(value)
    if name.endswith("_s") and isinstance(value, int | float):
        return span(float(value), lang)
    if name in TRANSLATED:
        return gettext(str(value))
    return str(value)
