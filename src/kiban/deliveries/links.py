"""Expiring download links for deliveries sent to a chat as a link (``chat_file: link``).

The file is kept under ``.kiban/deliveries/TOKEN/NAME`` with its expiry beside it; the console serves it at
``/deliveries/files/TOKEN/NAME`` until then (a capability link: the token is 32 random bytes, and the data
in it is masked like every delivery's). An expired link answers 410 and its file is removed; the scheduler
sweeps expired files away on each look (:func:`sweep`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiban.project import Project

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
META = "link.json"


def links_dir(project: Project) -> Path:
    return project.state_dir / "deliveries"


def keep(project: Project, path: Path, now: datetime, hours: float) -> tuple[str, datetime]:
    """Keep ``path`` for ``hours``; (its URL path, when it expires). ``now`` is naive UTC."""
    token = secrets.token_urlsafe(32)
    folder = links_dir(project) / token
    folder.mkdir(parents=True)
    shutil.copyfile(path, folder / path.name)
    expires = now + timedelta(hours=hours)
    temporary = folder / f".{META}.part"
    temporary.write_text(json.dumps({"expires": expires.isoformat(), "file": path.name}))
    os.replace(temporary, folder / META)
    return f"/deliveries/files/{token}/{path.name}", expires


def find(project: Project, token: str, name: str, now: datetime) -> Path | bool | None:
    """The kept file; None when there is none; False when it expired (and is removed now)."""
    if not _TOKEN.match(token):
        return None
    folder = links_dir(project) / token
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("file") != name:
        return None
    if datetime.fromisoformat(meta["expires"]) <= now:
        shutil.rmtree(folder, ignore_errors=True)
        return False
    return folder / name


def sweep(project: Project, now: datetime) -> int:
    """Remove expired (and half-made, older than a day) links; how many were removed."""
    root = links_dir(project)
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        try:
            expires = datetime.fromisoformat(json.loads((folder / META).read_text())["expires"])
        except (OSError, ValueError, KeyError):
            expires = datetime.fromtimestamp(folder.stat().st_mtime, UTC).replace(tzinfo=None) + timedelta(days=1)
        if expires <= now:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
