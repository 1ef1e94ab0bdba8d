"""What people are told, in their language and their words.

Consumers read the use case's description (never an internal id or an asset name), the cause in plain words,
when to expect the data, and a link to the console; owners read the asset, the reason with its numbers and the
workaround. English and Japanese. Subjects never end in doubled punctuation (a description that ends in a full
stop is trimmed before a suffix is added).
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("en", "ja")

_PLAIN = {  # the root cause's kind → what a consumer understands
    "en": {"late_source": "the source data arrived late", "failed": "a processing step failed",
           "slow": "processing is taking longer than usual", "queued": "processing had to wait its turn",
           "late_start": "processing started late", "bad_data": "a data quality check found a problem",
           "partial_day": "only part of the day's data had been collected",
           None: "the data is not ready yet"},
    "ja": {"late_source": "元データの到着が遅れています", "failed": "処理の一部が失敗しました",
           "slow": "処理に通常より時間がかかっています", "queued": "処理の順番待ちが発生しました",
           "late_start": "処理の開始が遅れました", "bad_data": "データ品質チェックで問題が見つかりました",
           "partial_day": "その日のデータが途中までしか取り込まれていません",
           None: "データの準備がまだできていません"},
}

_TEXT = {
    "en": {
        "at_risk": ("may be late", "Your data for {due} may not be ready by {deadline}. Why: {why}.{eta}"),
        "failed": ("not ready", "Your data for {due} was not ready by {deadline}. Why: {why}."),
        "incomplete": ("incomplete", "Your data for {due} was updated by {deadline} but does not reach {through} "
                                     "yet. Why: {why}."),
        "bad_data": ("data under review", "Your data for {due} arrived, but a quality check failed. Please do "
                                          "not rely on it until you hear again."),
        "late": ("ready, late", "Your data for {due} is ready, {late} after the {deadline} deadline."),
        "ready": ("your data is ready", "Your data for {due} is ready{late_part}. Sorry for the wait."),
        "told": " The data team ({owner}) is on it.",
        "eta": " Expected ready around {eta}.",
        "late_part": ", {late} after the {deadline} deadline",
    },
    "ja": {
        "at_risk": ("遅れる可能性があります", "{due} 分のデータは {deadline} までに準備できない可能性があります。"
                                         "理由: {why}。{eta}"),
        "failed": ("準備できていません", "{due} 分のデータは {deadline} までに準備できませんでした。理由: {why}。"),
        "incomplete": ("データが不完全です", "{due} 分のデータは更新されましたが、{through} までのデータがまだ"
                                          "ありません。理由: {why}。"),
        "bad_data": ("データを確認中です", "{due} 分のデータは届きましたが、品質チェックで問題が見つかりました。"
                                        "次の連絡までご利用をお控えください。"),
        "late": ("遅れて準備できました", "{due} 分のデータは準備できました（期限 {deadline} から {late} 遅れ）。"),
        "ready": ("データの準備ができました", "{due} 分のデータの準備ができました{late_part}。お待たせしました。"),
        "told": " データチーム（{owner}）が対応しています。",
        "eta": "{eta} 頃に準備できる見込みです。",
        "late_part": "（期限 {deadline} から {late} 遅れ）",
    },
}


def plain_cause(kind: str | None, language: str) -> str:
    table = _PLAIN.get(language, _PLAIN["en"])
    return table.get(kind, table[None])


def title(description: str, fallback: str) -> str:
    """The use case as its people call it: its description without the closing punctuation."""
    text = (description or fallback).strip()
    return text.rstrip("。．.!！?？、,;:： ") or fallback


@dataclass(frozen=True)
class ConsumerNotice:
    """What consumers of a use case's day are told about, whatever their language (``consumer_message``).

    ``due``/``deadline`` are already formatted; ``cause_kind`` is the root cause's kind (said in plain words);
    ``eta`` when the data is expected, ``late`` how late it came, ``through`` the last day it covers (``due``
    when not given); ``owner`` is named to consumers except on good news."""

    description: str
    usecase: str
    due: str
    deadline: str
    owner: str | None
    cause_kind: str | None = None
    eta: str | None = None
    late: str | None = None
    through: str | None = None


def consumer_message(event: str, language: str, notice: ConsumerNotice) -> tuple[str, str]:
    """(subject, text) for a consumer. ``event``: at_risk, failed, incomplete, bad_data, late or ready."""
    words = _TEXT.get(language, _TEXT["en"])
    suffix, body = words.get(event, words["failed"])
    due, deadline, eta, late, owner = notice.due, notice.deadline, notice.eta, notice.late, notice.owner
    text = str(body).format(due=due, deadline=deadline, why=plain_cause(notice.cause_kind, language),
                            eta=str(words["eta"]).format(eta=eta) if eta else "", late=late or "",
                            through=notice.through or due,
                            late_part=str(words["late_part"]).format(late=late, deadline=deadline) if late else "")
    if event not in ("ready", "late") and owner:
        text += str(words["told"]).format(owner=owner)
    separator = "：" if language == "ja" else ": "
    bracket = "【kiban】" if language == "ja" else "[kiban] "
    return f"{bracket}{title(notice.description, notice.usecase)}{separator}{suffix}", text.strip()
