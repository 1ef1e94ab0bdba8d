"""Carrying one message over one channel: Slack webhook, generic JSON webhook, or SMTP e-mail.

Each sender either delivers or raises :class:`DeliveryError`; whether to try again is the outbox's decision,
so the error says whether the failure may be transient (``retryable``) and how long the server asked us to
wait (``retry_after``). Webhook URLs are bearer secrets (the path *is* the token) and SMTP URLs carry
passwords, so no error text ever contains them: URLs are shown as ``scheme://host:port/…`` and every
exception text from a library is scrubbed of the resolved secrets before it is put into a message.
"""

from __future__ import annotations

import email.policy
import html
import json
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from kiban import envref
from kiban.errors import ConfigError, KibanError
from kiban.notify.message import Message
from kiban.project.config import ChannelConfig
from kiban.project.loader import resolve_url

log = logging.getLogger("kiban.notify")

DEFAULT_TIMEOUT = 10.0  # seconds per attempt; a notification must never hold a run for long
_SLACK_ICON = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


class DeliveryError(KibanError):
    """A message could not be delivered over a channel. The text never contains a secret."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.retryable = retryable
        self.retry_after = retry_after


# --- secrets ---------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T/B/XYZ`` → ``https://hooks.slack.com/…``: enough to tell which."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<url>"
    if not host:
        return "<url>"
    shown = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{f':{port}' if port else ''}"
    return shown + ("/…" if parts.path.strip("/") or parts.query else "")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with ``***`` (longest first, so a URL goes before its own path)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def secrets_of(config: ChannelConfig, root: Path) -> list[str]:
    """Everything about a channel that must not appear in logs or the store: URLs, their paths, passwords."""
    found = _header_secrets(config)
    for raw in (config.url, config.smtp):
        try:
            value = _resolve(raw, root) if raw else ""
        except DeliveryError:
            continue
        if value:
            found += [value, *_url_secrets(value)]
    return found


def _resolve(value: str, root: Path) -> str:
    """``env:NAME`` → the variable's value; a missing variable is a delivery failure, not a crash."""
    try:
        return resolve_url(value, root)
    except ConfigError as exc:
        raise DeliveryError(exc.message) from None


_SENSITIVE_HEADER = ("auth", "token", "key", "secret", "signature", "cookie", "password")


def _header_secrets(config: ChannelConfig) -> list[str]:
    """Header values that are secret: those from ``env:`` and those under a name like Authorization/X-Api-Key."""
    found = []
    for name, raw in config.headers.items():
        if envref.env_name(raw) is not None or any(word in name.lower() for word in _SENSITIVE_HEADER):
            try:
                found.append(_header(raw))
            except DeliveryError:
                continue
    return found


def _header(value: str) -> str:
    return envref.resolve(value, lambda name: DeliveryError(
        f"environment variable {name} is not set (a channel header refers to {value})"))


# --- HTTP ------------------------------------------------------------------------------------------


def send_slack(config: ChannelConfig, message: Message, *, root: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """POST to a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat accept this shape)."""
    assert config.url is not None  # ChannelConfig guarantees it
    _post(_resolve(config.url, root), slack_payload(message), {}, [], timeout, "Slack webhook")


def send_webhook(config: ChannelConfig, message: Message, *, root: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """POST the message as JSON to any HTTP endpoint, with the channel's headers (values may be ``env:NAME``)."""
    assert config.url is not None
    headers = {name: _header(value) for name, value in config.headers.items()}
    _post(_resolve(config.url, root), message.as_dict(), headers, _header_secrets(config), timeout, "webhook")


def send_webhook_file(config: ChannelConfig, message: Message, file: tuple[str, bytes, str], *, root: Path,
                      timeout: float = DEFAULT_TIMEOUT) -> None:
    """POST the message and a file as ``multipart/form-data`` to a webhook channel: the part ``payload_json``
    is the message's JSON (what :func:`send_webhook` posts), the part ``file`` the file (name, bytes, type) —
    the shape Discord-style and most file-accepting chat webhooks take."""
    assert config.url is not None
    headers = {name: _header(value) for name, value in config.headers.items()}
    _post(_resolve(config.url, root), message.as_dict(), headers, _header_secrets(config), timeout, "webhook",
          file=file)


def slack_payload(message: Message) -> dict[str, Any]:
    """``text`` for the notification preview, ``blocks`` for the layout (Slack's length limits respected)."""
    icon = _SLACK_ICON[message.severity]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(message.subject, 150), "emoji": True}},
    ]
    if message.text.strip():
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(_mrkdwn(message.text), 3000)}})
    if message.fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{_mrkdwn(key)}*\n{_mrkdwn(value)}", 2000)}
            for key, value in list(message.fields.items())[:10]]})
    if message.link:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{message.link}|Open details>"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{icon} {message.severity} · kiban"}]})
    text = _cut(f"{icon} *{_mrkdwn(message.subject)}*\n{_mrkdwn(message.text)}".rstrip(), 3000)
    return {"text": text, "blocks": blocks}


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _post(url: str, payload: dict[str, Any], headers: dict[str, str], secret_headers: list[str], timeout: float,
          what: str, file: tuple[str, bytes, str] | None = None) -> None:
    shown, secrets = redact_url(url), [url, *_url_secrets(url), *secret_headers]
    try:
        if file is None:
            response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
        else:
            response = httpx.post(url, data={"payload_json": json.dumps(payload, ensure_ascii=False)},
                                  files={"file": file}, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise DeliveryError(f"{what} {shown} did not answer within {timeout:g} s", retryable=True) from None
    except httpx.UnsupportedProtocol:
        raise DeliveryError(f"{what} URL {shown} is not an http(s) URL") from None
    except httpx.TransportError as exc:
        reason = scrub(str(exc) or type(exc).__name__, secrets)
        raise DeliveryError(f"cannot reach {what} {shown}: {reason}", retryable=True) from None
    except (httpx.InvalidURL, ValueError):
        raise DeliveryError(f"{what} URL {shown} is not a valid URL") from None
    if response.is_success:
        return
    status = response.status_code
    body = scrub(" ".join(response.text.split())[:200], secrets)
    detail = f"{what} {shown} answered HTTP {status} {response.reason_phrase}" + (f": {body}" if body else "")
    transient = status == 429 or status >= 500
    raise DeliveryError(detail, retryable=transient,
                        retry_after=retry_after_seconds(response.headers.get("retry-after")) if transient else None)


def _url_secrets(url: str) -> list[str]:
    """The parts of a URL that are credentials: the path and query of a webhook, the password of a mail server."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    password = parts.password or ""
    candidates = (parts.path if parts.path.strip("/") else "", parts.query, password, unquote(password))
    return [p for p in candidates if p]


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- e-mail ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to hand mail over, parsed from ``smtp[s]://user:password@host:port?starttls=1``."""

    implicit_tls: bool
    host: str
    port: int
    user: str | None
    password: str | None
    starttls: bool

    def __str__(self) -> str:  # what errors show: never the credentials
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"


_SMTP_HINT = "write it as smtp://user:password@host:port (smtps:// for implicit TLS, ?starttls=1 for STARTTLS)"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Ports default to 465 (smtps), 587 (STARTTLS) or 25; user and password are percent-decoded."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DeliveryError(f"the SMTP URL {redact_url(url)} is not valid", hint=_SMTP_HINT) from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise DeliveryError(f"the SMTP URL {redact_url(url)} is not an smtp:// or smtps:// URL", hint=_SMTP_HINT)
    implicit = parts.scheme == "smtps"
    flag = parse_qs(parts.query).get("starttls", ["0"])[-1].lower()
    starttls = not implicit and flag in ("1", "true", "yes", "on")
    return SmtpTarget(implicit, parts.hostname, port or (465 if implicit else 587 if starttls else 25),
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, starttls)


def build_email(message: Message, sender: str, to: Iterable[str]) -> EmailMessage:
    """Plain text plus an HTML alternative, UTF-8 throughout (subjects are RFC 2047-encoded as needed)."""
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["Subject"] = message.subject
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain="kiban.invalid")
    mail["X-Kiban-Severity"] = message.severity
    plain, rich = _plain(message), _html(message)
    # 8-bit bodies need the server's 8BITMIME; base64 goes through any relay, and Japanese text stays intact.
    cte = None if plain.isascii() and rich.isascii() else "base64"
    mail.set_content(plain, cte=cte)
    mail.add_alternative(rich, subtype="html", cte=cte)
    return mail


def _plain(message: Message) -> str:
    lines = [message.text.rstrip(), ""]
    width = max((len(k) for k in message.fields), default=0)
    lines += [f"{key.ljust(width)}  {value}" for key, value in message.fields.items()]
    if message.link:
        lines += ["", message.link]
    return "\n".join(lines).strip() + "\n"


def _html(message: Message) -> str:
    esc = html.escape
    colour = {"info": "#2f6fdd", "warning": "#c77c02", "critical": "#c62828"}[message.severity]
    rows = "".join(f"<tr><th align='left' style='padding:2px 12px 2px 0'>{esc(k)}</th><td>{esc(v)}</td></tr>"
                   for k, v in message.fields.items())
    parts = [f"<p style='color:{colour};font-weight:bold'>{esc(message.severity.upper())}</p>",
             f"<p>{esc(message.text).replace(chr(10), '<br>')}</p>"]
    if rows:
        parts.append(f"<table>{rows}</table>")
    if message.link:
        parts.append(f"<p><a href='{esc(message.link)}'>{esc(message.link)}</a></p>")
    return f"<!doctype html><html><body style='font-family:sans-serif'>{''.join(parts)}</body></html>\n"


def send_email(config: ChannelConfig, message: Message, *, root: Path, timeout: float = DEFAULT_TIMEOUT,
               attachments: Iterable[tuple[str, bytes, str]] = ()) -> None:
    """Hand the message to an SMTP server; log in only when the URL names a user. ``attachments`` are
    (file name, content, MIME type) — a delivery's file (kiban.deliveries)."""
    assert config.smtp is not None and config.sender is not None
    url = _resolve(config.smtp, root)
    target = parse_smtp_url(url)
    secrets = [url, *(s for s in (target.password,) if s)]
    mail = build_email(message, config.sender, config.to)
    for filename, content, mime in attachments:
        main, _, sub = mime.partition("/")
        mail.add_attachment(content, maintype=main, subtype=sub, filename=filename)
    try:
        refused = _smtp_send(target, mail, config.sender, list(config.to), timeout)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"the mail server {target} refused the login of {target.user} ({exc.smtp_code})",
                            hint="check the user and password in the channel's smtp URL") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"the mail server {target} refused every recipient: "
                            + scrub(", ".join(exc.recipients), secrets)) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"the mail server {target} does not support {scrub(str(exc), secrets)}",
                            hint="use smtps:// for implicit TLS, or drop ?starttls=1") from None
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"the mail server {target} answered {exc.smtp_code} {scrub(reply, secrets)}",
                            retryable=400 <= exc.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"the TLS certificate of {target} is not trusted: {exc.verify_message}") from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        reason = scrub(str(exc) or type(exc).__name__, secrets)
        raise DeliveryError(f"cannot deliver mail via {target}: {reason}", retryable=True) from None
    if refused:  # accepted for the others; retrying would send them duplicates
        log.warning("mail server %s refused some recipients: %s", target, ", ".join(refused))


def _smtp_send(target: SmtpTarget, mail: EmailMessage, sender: str, to: list[str],
               timeout: float) -> dict[str, Any]:
    context = ssl.create_default_context()
    client = (smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=context) if target.implicit_tls
              else smtplib.SMTP(target.host, target.port, timeout=timeout))
    try:
        if target.starttls:
            client.starttls(context=context)
        if target.user:
            client.login(target.user, target.password or "")
        return dict(client.send_message(mail, from_addr=sender, to_addrs=to))
    finally:
        try:  # the mail is handed over; a failing QUIT must not turn into a retry (and a duplicate)
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


Sender = Callable[..., None]
SENDERS: dict[str, Sender] = {"slack": send_slack, "webhook": send_webhook, "email": send_email}
