"""Caches under ``.kiban/cache/``: one versioned JSON file each, written atomically. Only caches: a missing,
stale or unreadable file is the same as an empty one, and a project on a read-only disk still runs."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any


def read_entries(path: Path | None, version: int | str) -> dict[str, Any]:
    """The entries of the cache at ``path``, or none when it is missing, unreadable or of another version."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return dict(data["entries"]) if data.get("version") == version else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_entries(path: Path, version: int | str, entries: dict[str, Any]) -> None:
    """Replace the cache at ``path`` in one rename, so a reader never sees half a file."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}")
        with os.fdopen(fd, "w") as handle:  # dumps, not dump: json.dump streams through the pure-Python encoder
            handle.write(json.dumps({"version": version, "entries": entries}))
        os.replace(tmp, path)


@functools.cache
def library_version(name: str) -> str:
    """The installed release of a library whose output a cache keeps (SQLGlot's parse, its lineage walk): part of
    the cache's keys, so an upgrade recomputes rather than serves what the old release said. Read from the
    package's metadata, without importing it (a warm cache must not import SQLGlot)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"
