"""Assets: anything that holds data, keyed ``layer.name``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from kiban.project.config import Layer, ModelConfig
from kiban.python.spec import PythonSpec


@dataclass(frozen=True)
class Asset:
    """One asset of the project.

    Lake assets have no SQL: they are views over the Parquet files under ``lake/<name>/``.
    Warehouse and mart assets are SQL models built from their ``.sql`` file, or Python models (``python``).
    """

    layer: Layer
    name: str
    path: Path
    sql: str | None = None
    config: ModelConfig = field(default_factory=ModelConfig)
    config_path: Path | None = None
    # where its settings are inside config_path: () for its own sidecar, ("models", i) in a file of several
    config_at: tuple[str | int, ...] = ()
    python: PythonSpec | None = None  # a Python model (models/<layer>/*.py): its function, kind and inputs

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def tags(self) -> tuple[str, ...]:
        return self.config.tags

    @property
    def sql_hash(self) -> str:
        return hashlib.sha256((self.sql or "").encode()).hexdigest()

    def __str__(self) -> str:
        return self.key
