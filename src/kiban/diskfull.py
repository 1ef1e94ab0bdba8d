"""A full disk, said once and plainly: which filesystem, how much is free, how much more is needed — instead of
a chain of tracebacks ("disk I/O error", "database or disk is full", "No space left on device") from whichever
layer noticed first (SQLite, DuckDB, Arrow, the OS)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from kiban.errors import KibanError

NEEDED_BYTES = 256 << 20  # room kiban asks for: a load's files, a model's new table and the store's journal
_SIGNS = ("no space left on device", "database or disk is full", "disk quota exceeded", "disk i/o error",
          "not enough space on the disk")


class DiskFullError(KibanError):
    """The disk under the project (lake, warehouse or state store) is full: nothing half-written was
    published; free space, then ``kiban run --resume``."""

    exit_code = 1


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its chain) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current).lower()
        if any(sign in text for sign in _SIGNS):
            return True
        current = current.__cause__ or current.__context__
    return False


def mount_of(path: Path) -> Path:
    """The mount point of the filesystem ``path`` is on."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def disk_full(paths: list[Path], what: str) -> DiskFullError:
    """The message: for each distinct filesystem under ``paths``, its mount point, free and total space."""
    described: list[str] = []
    seen: set[Path] = set()
    lowest = None
    for path in paths:
        mount = mount_of(path)
        if mount in seen:
            continue
        seen.add(mount)
        usage = shutil.disk_usage(mount)
        lowest = usage.free if lowest is None else min(lowest, usage.free)
        described.append(f"{mount} has {_size(usage.free)} free of {_size(usage.total)}")
    needed = max(NEEDED_BYTES - (lowest or 0), 0) or NEEDED_BYTES
    return DiskFullError(f"the disk is full while {what}: {'; '.join(described)}",
                         f"free at least {_size(needed)} more there (nothing half-written was published), then "
                         "`kiban run --resume`")
