"""What a plan must know besides the graph and the published versions (``plan.Extra``).

- **Files a model reads directly** (``read_parquet('data/*.parquet')``, ``read_csv([...])``): their identity —
  every matching path with its size and modification time — is an input of the model like a table's version.
  Relative names are resolved as DuckDB resolves them (from the working directory). A name kiban cannot stat
  (a URL, a computed argument) has no version it can see: the model is rebuilt on every run. So is a model that
  reads the time or a random value (``now()``, ``random()``); one that reads today's date (``current_date``,
  ``today()``) has the date in the project's time zone as that input's version: it is rebuilt once a day.
- **Histories**: changes that are not appends. A collected table's retracted and replayed loads (from the
  manifests), a model's backfilled partitions (from the backfill ledger), a plain lake folder's replaced or
  deleted Parquet files, and for the tables models read through ``_latest``/``_history`` the loads that gave an
  old key a new version or deleted it (``engines.lake.key_changes``).

A plain lake folder has no manifest: what it held at the previous plan is remembered in
``.kiban/cache/lake_folders.json`` (each file's size and mtime, and the folder's history). Files only added keep
the history; a file gone or changed gives a new one. Losing that file is safe: the history starts again from the
folder's present identity, which differs from the published one, so incremental readers are built whole once.
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from kiban.cachefile import read_entries, write_entries
from kiban.engines.base import CollectedTable
from kiban.engines.lake import folder_identities, key_changes
from kiban.graph import Graph
from kiban.graph.dag import CLOCK_DAY_FILE
from kiban.run.plan import Extra
from kiban.store import Store, lite

FOLDERS = "lake_folders.json"  # plain lake folder → its files and history at the last plan
KEYS = "lake_keys.json"  # collected table → (its files' digest, key_changes of them)
CACHE_VERSION = 1
REMOTE = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfss://", "http://", "https://", "hf://", "r2://")


def file_identity(patterns: tuple[str, ...], root: Path | None = None) -> str:
    """A digest of the files ``patterns`` name now: path (relative to ``root`` when inside it), size, mtime."""
    digest = hashlib.sha256()
    for pattern in patterns:
        if pattern == "?" or pattern.lower().startswith(REMOTE):  # no version kiban can see: always new
            digest.update(f"{pattern}\0{secrets.token_hex(8)}\n".encode())
            continue
        if pattern.startswith(CLOCK_DAY_FILE):  # current_date, today(): the date where the project is
            zone = ZoneInfo(pattern[len(CLOCK_DAY_FILE):])
            digest.update(f"{pattern}\0{datetime.now(zone).date().isoformat()}\n".encode())
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
    if store.lite is not None:  # a SQLite store opened without SQLAlchemy
        with store.lite_read() as conn:
            return lite.replaced(conn, project)
    from kiban.store.backfills import BackfillLedger

    return BackfillLedger(store).replaced(project)


def plan_extra(graph: Graph, root: Path, store: Store | None, project: str,
               collected: Mapping[str, CollectedTable] | None) -> Extra:
    """Everything ``make_plan`` needs to know beyond the engine's versions."""
    histories: dict[str, str] = {k: t.changes for k, t in (collected or {}).items() if t.changes}
    if store is not None:
        histories.update(backfilled(store, project))
    files = {key: file_identity(patterns, root.resolve()) for key, patterns in graph.files.items()}
    cache = root / ".kiban" / "cache"
    plain = [key for key, asset in graph.assets.items() if asset.layer == "lake" and key not in (collected or {})]
    if plain:
        histories.update(folder_histories(graph, plain, cache / FOLDERS))
    read = {table for tables in graph.versioned.values() for table in tables}
    versioned = versioned_histories({k: t for k, t in (collected or {}).items() if k in read}, cache / KEYS)
    return Extra(histories=histories, files=files, versioned=versioned)


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder_histories(graph: Graph, keys: list[str], path: Path) -> dict[str, str]:
    """plain lake folder → its history: the same while files are only added, new when one is replaced or gone."""
    known = read_entries(path, CACHE_VERSION)
    out: dict[str, str] = {}
    entries: dict[str, object] = {}
    for key in keys:
        folder = graph.assets[key].path
        now = {rel: list(identity) for rel, identity in folder_identities(folder).items()} if folder.is_dir() else {}
        before = known.get(key)
        if isinstance(before, dict) and isinstance(before.get("files"), dict) and before.get("history"):
            kept = all(now.get(rel) == identity for rel, identity in before["files"].items())
            history = before["history"] if kept else _short(f"{before['history']}\0{sorted(now.items())}")
        else:  # nothing remembered: start from what is there (differs from any history published before)
            history = _short(f"first\0{sorted(now.items())}")
        out[key] = str(history)
        entries[key] = {"files": now, "history": out[key]}
    if entries != {k: known.get(k) for k in keys}:
        write_entries(path, CACHE_VERSION, {**known, **entries})
    return out


def versioned_histories(tables: Mapping[str, CollectedTable], path: Path) -> dict[str, str]:
    """collected table → ``key_changes`` of its committed files (cached by the file list: one scan per load)."""
    if not tables:
        return {}
    known = read_entries(path, CACHE_VERSION)
    out: dict[str, str] = {}
    changed = False
    for key, table in tables.items():
        listed = _short("\n".join(table.files) + f"\0{table.primary_key}\0{table.deletes}")
        cached = known.get(key)
        if isinstance(cached, list) and len(cached) == 2 and cached[0] == listed:
            out[key] = str(cached[1])
            continue
        out[key] = key_changes(table)
        known[key] = [listed, out[key]]
        changed = True
    if changed:
        write_entries(path, CACHE_VERSION, known)
    return {k: v for k, v in out.items() if v}
