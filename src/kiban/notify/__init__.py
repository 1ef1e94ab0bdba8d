"""Service-level notifications: tell consumers and owners, over Slack, webhooks and e-mail, exactly once.

``Notifier.of(project, store).send(["ops"], Message(...))`` never raises; see
:mod:`kiban.notify.outbox` for deduplication, rate limits and retries, :mod:`kiban.notify.channels` for the wire.
"""

from kiban.notify.channels import DeliveryError
from kiban.notify.message import Message
from kiban.notify.outbox import DeliveryResult, Notifier

__all__ = ["DeliveryError", "DeliveryResult", "Message", "Notifier"]
