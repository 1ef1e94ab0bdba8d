"""What a plan must know besides the graph and the published versions (``plan.Extra``).

- **Files a model reads directly** (``read_parquet('data/*.parquet')``, ``read_csv([...])``): their identity —
  every matching path with its size and modification time — is an input of the model like a table's version.
  Relative names are resolved as DuckDB resolves them (from the working directory). A name kiban cannot stat
  (a URL, a computed argument) has no version it can see: the model is rebuilt on every run.
- **Histories**: changes that are not appends. A collected table's retracted and replayed loads (from the
  manifests), a model's backfilled partitions (from the backfill ledger).
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from kiban.engines.base import CollectedTable
from kiban.graph import Graph
from kiban.run.plan import Extra
from kiban.store import Store
from kiban.store.backfills import BackfillLedger

REMOTE = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfss://", "http://", "https://", "hf://", "r2://")


def file_identity(patterns: tuple[str, ...], root: Path | None = None) -> str:
    """A digest of the files ``patterns`` name now: path (relative to ``root`` when inside it), size, mtime."""
    digest = hashlib.sha256()
    for pattern in patterns:
        if pattern == "?" or pattern.lower().startswith(REMOTE):  # no version kiban can see: always new
            digest.update(f"{pattern}\0{secrets.token_hex(8)}\n".encode())
            continue
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        digest.update(f"{pattern}\0{len(matches)}\n".encode())
        for match in matches:
            try:
                stat = os.stat(match)
            except OSError:
                digest.update(f"{match}\0missing\n".encode())
                continue
            shown = os.path.abspath(match)
            if root is not None and shown.startswith(str(root) + os.sep):  # a moved project keeps its versions
                shown = os.path.relpath(shown, root)
            digest.update(f"{shown}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def backfilled(store: Store, project: str) -> dict[str, str]:
    """model → a digest of its partitions every backfill replaced ('' absent: never backfilled)."""
    return BackfillLedger(store).replaced(project)


def plan_extra(graph: Graph, root: Path, store: Store | None, project: str,
               collected: Mapping[str, CollectedTable] | None) -> Extra:
    """Everything ``make_plan`` needs to know beyond the engine's versions."""
    histories: dict[str, str] = {k: t.changes for k, t in (collected or {}).items() if t.changes}
    if store is not None:
        histories.update(backfilled(store, project))
    files = {key: file_identity(patterns, root.resolve()) for key, patterns in graph.files.items()}
    return Extra(histories=histories, files=files)
