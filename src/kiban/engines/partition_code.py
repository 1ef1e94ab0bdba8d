"""What an incremental model's published rows were computed with, on every engine (no engine imported here)."""

from __future__ import annotations

import hashlib

from kiban.project import Asset


def code_of(asset: Asset) -> str:
    """What the published rows were computed with: the SQL and how it is cut into partitions."""
    cfg = asset.config
    text = f"{(asset.sql or '').strip().rstrip(';')}\0{cfg.time_column}\0{cfg.partition_grain}"
    return hashlib.sha256(text.encode()).hexdigest()
