"""Keeping connection secrets out of logs, the state store and messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*)(?::[^@/\s]*)?@")
_KEYVALUE = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key|apikey)=([^\s&;]+)")


def redact(text: str, url: str | None = None) -> str:
    """``text`` without the password of ``url`` or any ``user:password@`` or ``password=…`` in it."""
    if url:
        parts = urlsplit(url)
        if parts.password:
            text = text.replace(parts.password, "***")
        text = text.replace(url, safe_url(url))
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
    return _KEYVALUE.sub(lambda m: f"{m.group(1)}=***", text)


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
