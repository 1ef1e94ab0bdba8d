"""What a notification says, independent of the channel that carries it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Message:
    """One notification.

    ``dedupe_key`` names the *event* (e.g. ``incident:morning_sales:2026-11-30:at_risk``), not the text: a
    scheduler that re-evaluates every minute produces the same key again and again, and the outbox uses it to
    tell people once instead of sixty times an hour. ``fields`` are the key facts (deadline, owner, asset),
    shown as a table in Slack and e-mail so readers need not parse prose.
    """

    subject: str
    text: str
    severity: str
    dedupe_key: str
    fields: dict[str, str] = field(default_factory=dict)
    link: str | None = None

    def __post_init__(self) -> None:
        # Fail where the message is built (a programming mistake), not later inside a channel.
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not '{self.severity}'")
        if not self.dedupe_key:
            raise ValueError("a message needs a dedupe_key (it decides what counts as the same message)")

    def as_dict(self) -> dict[str, object]:
        """The JSON body a generic webhook receives."""
        return asdict(self)
