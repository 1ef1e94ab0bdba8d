"""Keeping connection secrets out of logs, the state store and messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*)(?::[^@/\s]*)?@")
# a secret-looking key (access_token, client_secret, x-api-key, refresh_token, signature …) and its value, in a
# query string (key=value), a header line (key: value) or JSON ("key": "value")
SECRET_KEY = re.compile(r"(?i)(password|passwd|pwd|token|secret|api[_-]?key|apikey|signature|credential|"
                        r"session[_-]?id|authorization|auth)")
_KEYVALUE = re.compile(r"(?i)(?P<key>[\w.-]*(?:password|passwd|pwd|token|secret|api[_-]?key|apikey|signature|"
                       r"credential|session[_-]?id|authorization)[\w.-]*)(?P<sep>\"?\s*[=:]\s*\"?)"
                       r"(?P<scheme>(?:bearer|basic|token)\s+)?(?P<value>[^\s&;,\"'}\]]+)")
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")


def redact(text: str, url: str | None = None) -> str:
    """``text`` without the password of ``url`` or any ``user:password@`` or ``password=…`` in it."""
    if url:
        parts = urlsplit(url)
        if parts.password:
            text = text.replace(parts.password, "***")
        text = text.replace(url, safe_url(url))
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
    text = _KEYVALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{m.group('scheme') or ''}***", text)
    return _BEARER.sub(lambda m: f"{m.group('scheme')} ***", text)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` without any of the literal ``secrets`` (values from the environment or the config)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def safe_url(url: str) -> str:
    """A URL fit to show: scheme, user, host, port and database; never the password or query."""
    parts = urlsplit(url)
    if not parts.scheme:
        return "***"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"
