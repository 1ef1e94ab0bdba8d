"""Delta tables on shared storage: the lake's loads (one commit per load) and published tables (one commit per
publish). delta-rs (``deltalake``) writes and reads them with its own object-store client; nothing here needs a
DuckDB extension.

Why a commit per load is safe to kill: delta-rs first writes the load's data files (invisible: no log entry names
them), then puts the log entry ``_delta_log/NNN.json`` with put-if-absent — the single atomic step. A process
killed before it leaves stray files no snapshot names; killed after it, the commit is whole. kiban reads a lake
table at the version the state store recorded with the load's manifest, so a commit whose manifest never
committed (killed between the two) is in no kiban reader's snapshot, and the table's next load
:meth:`DeltaTables.repair` s it away with a new snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.storage.cache import filesystem
from kiban.storage.spec import StorageError

if TYPE_CHECKING:
    import pyarrow as pa

    from kiban.storage.spec import StorageConfig

LOAD_ID = "_load_id"
META_LOAD = "kiban.load"  # the commit's load id (custom commit metadata)
META_TAG = "kiban.version"  # a published table's data version


def _library() -> Any:
    """The deltalake package, or a one-line error saying which extra brings it."""
    try:
        import deltalake
    except ImportError:
        raise StorageError("storage: in kiban.yml needs the deltalake package",
                           "pip install 'kiban[storage]'") from None
    return deltalake


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def delta_ready(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the types Delta has no name for made ones it has: dictionary columns as their values,
    unsigned integers as the next wider signed type (uint64 as decimal(20, 0))."""
    import pyarrow as pa

    def fit(t: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(t):
            return fit(t.value_type)
        if pa.types.is_uint8(t):
            return pa.int16()
        if pa.types.is_uint16(t):
            return pa.int32()
        if pa.types.is_uint32(t):
            return pa.int64()
        if pa.types.is_uint64(t):
            return pa.decimal128(20, 0)
        return t

    return pa.schema([f.with_type(fit(f.type)) for f in schema], metadata=None)


class DeltaTables:
    """The Delta tables under one root (``s3://bucket/prefix`` or a local folder): ``<root>/<name>``."""

    def __init__(self, root: str, options: dict[str, str]) -> None:
        self.root = root.rstrip("/")
        self.options = options if root.startswith("s3://") else {}

    @classmethod
    def at(cls, root: str | None, storage: StorageConfig, base: Path) -> DeltaTables | None:
        """The tables under a ``storage:`` root as kiban.yml wrote it (``s3://…``, ``file://…`` or a folder relative
        to the project folder ``base``); None when that root is not set."""
        if root is None:
            return None
        if root.startswith("file://"):
            root = root[len("file://"):]
        if not root.startswith("s3://"):
            root = str((base / root).resolve())
        return cls(root, storage.options() if storage.remote(root) else {})

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    # -- reading ------------------------------------------------------------------------------------------
    def _open(self, name: str, version: int | None = None) -> Any:
        _library()
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self.options)
        except TableNotFoundError:
            return None
        except Exception as exc:  # the object store's own errors: unreachable, denied, no such bucket
            raise StorageError(f"cannot read the Delta table {self.uri(name)}: {exc}",
                               "check storage: in kiban.yml (endpoint_url, bucket, credentials)") from exc

    def latest(self, name: str) -> int | None:
        """The table's newest version (None: there is no table yet)."""
        table = self._open(name)
        return None if table is None else int(table.version())

    def files(self, name: str, version: int) -> list[str]:
        """The data files (URIs) of the snapshot ``version``: exactly its rows (kiban writes no deletion vectors;
        a table with them, written by another tool, is refused rather than read wrong)."""
        table = self._open(name, version)
        if table is None:
            raise StorageError(f"the Delta table {self.uri(name)} is gone, but the state store recorded its "
                               f"version {version}", "restore the bucket, or collect the table again")
        features = table.protocol().reader_features or []
        if "deletionVectors" in features:
            raise StorageError(f"{self.uri(name)} uses deletion vectors (written by another tool): kiban reads "
                               "snapshots as their files and would see deleted rows",
                               "rewrite the table without deletion vectors")
        return list(table.file_uris())

    def metadata(self, name: str) -> dict[str, Any]:
        """The newest commit's custom metadata ({} without a table)."""
        table = self._open(name)
        if table is None:
            return {}
        history = table.history(1)
        return dict(history[0]) if history else {}

    # -- writing ------------------------------------------------------------------------------------------
    def commit_load(self, name: str, paths: Sequence[Path], load_id: str, replaces: Iterable[str] = (),
                    base: int | None = None) -> int:
        """One Delta commit adding the rows of ``paths`` (a load's Parquet files); the rows of the loads
        ``replaces`` leave in the same commit (a superseded load). With ``base``, the commit must be version
        ``base + 1``: another commit made after ``base`` fails it (no retry on top of someone else's rows).
        Returns the new version."""
        _library()
        from deltalake import CommitProperties, write_deltalake

        reader = _reader(paths)
        gone = sorted(set(replaces))
        props = CommitProperties(custom_metadata={META_LOAD: load_id}, max_commit_retries=0)
        target: Any = self.uri(name)
        if base is not None:
            target = self._open(name, base)
            if target is None:
                raise StorageError(f"the Delta table {self.uri(name)} is gone since version {base}",
                                   "collect again: the next load starts from what the state store recorded")
        try:
            if gone:  # replace where _load_id is one of them — or this load's (so its own rows match too)
                where = f"{LOAD_ID} IN ({', '.join(_literal(i) for i in [*gone, load_id])})"
                write_deltalake(target, reader, mode="overwrite", predicate=where, schema_mode="merge",
                                storage_options=self.options, commit_properties=props)
            else:
                write_deltalake(target, reader, mode="append", schema_mode="merge",
                                storage_options=self.options, commit_properties=props)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"load {load_id} could not be committed to {self.uri(name)}: {exc}",
                               "nothing of it is visible; collect again once storage is reachable") from exc
        if base is not None:
            return base + 1
        latest = self.latest(name)
        assert latest is not None
        return latest

    def commit_files(self, name: str, paths: Sequence[Path], load_id: str, base: int) -> int | None:
        """A load's Parquet files put AS THEY ARE into the table's folder on the storage root (``<load_id>-N
        .parquet``: no re-encoding, no second copy of the rows), then ONE Delta commit naming them, right after
        version ``base`` (no retry on top of another commit). Returns the new version — or None, having put
        nothing, when the files cannot be named as they are (a column the table lacks, a type it stores otherwise:
        :meth:`commit_load` rewrites those). Files put by a load killed before its commit are named by no version:
        invisible, and removed by :meth:`vacuum`."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self._open(name, base)
        if table is None:
            return None
        columns = {f.name: f.type for f in pa.schema(table.schema().to_arrow())}
        schemas = [pq.read_schema(p) for p in paths]
        if any(columns.get(f.name) != f.type for schema in schemas for f in schema):
            return None
        from deltalake import CommitProperties
        from deltalake.transaction import AddAction

        actions = []
        for number, path in enumerate(paths):
            relative = f"{load_id}-{number}.parquet"
            self._put(path, f"{self.uri(name)}/{relative}")
            rows = pq.read_metadata(path).num_rows
            actions.append(AddAction(relative, path.stat().st_size, {}, int(path.stat().st_mtime * 1000), True,
                                     json.dumps({"numRecords": rows})))
        try:
            table.create_write_transaction(actions, "append", pa.schema(table.schema().to_arrow()),
                                           commit_properties=CommitProperties(custom_metadata={META_LOAD: load_id},
                                                                              max_commit_retries=0))
        except Exception as exc:
            raise StorageError(f"load {load_id} could not be committed to {self.uri(name)}: {exc}",
                               "nothing of it is visible; collect again once storage is reachable") from exc
        return base + 1

    def _put(self, path: Path, uri: str) -> None:
        """One file to the storage root: a copy on a shared disk (fsynced, then renamed into place), an upload
        to an object store."""
        if uri.startswith("s3://"):
            from pyarrow import fs

            try:
                fs.copy_files(str(path), uri[len("s3://"):], source_filesystem=fs.LocalFileSystem(),
                              destination_filesystem=filesystem(self.options))
            except OSError as exc:
                raise StorageError(f"cannot write {uri}: {exc}", "check storage: in kiban.yml and the bucket") \
                    from exc
            return
        target = Path(uri)
        partial = target.with_name(f".{target.name}.part")
        partial.unlink(missing_ok=True)
        try:
            os.link(path, partial)  # the same disk: the landed file itself (already fsynced), no copy
        except OSError:
            shutil.copyfile(path, partial)
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(partial, target)

    def retract(self, name: str, load_ids: Iterable[str]) -> int | None:
        """A new snapshot without the rows of ``load_ids``; returns its version (None: there is no table)."""
        table = self._open(name)
        if table is None:
            return None
        from deltalake import CommitProperties

        ids = sorted(set(load_ids))
        table.delete(f"{LOAD_ID} IN ({', '.join(_literal(i) for i in ids)})",
                     commit_properties=CommitProperties(custom_metadata={META_LOAD: "retract " + " ".join(ids)}))
        return int(table.version())

    def repair(self, name: str, recorded: int | None) -> int | None:
        """Undo commits the state store never recorded (a process killed between its Delta commit and its
        manifest): a new snapshot equal to ``recorded`` (or empty when nothing was recorded). Returns the new
        version, or None when there was nothing to undo. Call only while holding the table's collection lock."""
        table = self._open(name)
        if table is None:
            return None
        latest = int(table.version())
        if recorded is not None and latest <= recorded:
            return None
        if recorded is not None and all(str(h.get("operation", "")).startswith("VACUUM")
                                        for h in table.history(latest - recorded)):
            return None  # only a vacuum's bookkeeping commits since: the rows are the recorded version's
        from deltalake import CommitProperties

        props = CommitProperties(custom_metadata={META_LOAD: "repair"})
        if recorded is None:
            if not table.file_uris():
                return None
            table.delete(commit_properties=props)
        else:
            table.restore(recorded, commit_properties=props)
        return int(table.version())

    def publish(self, name: str, data: pa.Table | pa.RecordBatchReader, tag: str) -> int:
        """Replace the table's rows (and schema) with ``data`` in one commit tagged ``tag``; returns its version.
        A reader sees the old snapshot or the new one, never a mix; a publish killed midway leaves the old."""
        _library()
        from deltalake import CommitProperties, write_deltalake

        try:
            write_deltalake(self.uri(name), data, mode="overwrite", schema_mode="overwrite",
                            storage_options=self.options,
                            commit_properties=CommitProperties(custom_metadata={META_TAG: tag}))
        except Exception as exc:
            raise StorageError(f"{name} could not be published to {self.uri(name)}: {exc}",
                               "the previous snapshot stays; the next run publishes it again") from exc
        latest = self.latest(name)
        assert latest is not None
        return latest

    def read(self, name: str, version: int) -> pa.Table:
        """The rows of ``name`` at ``version`` (a snapshot: its files never change)."""
        table = self._open(name, version)
        if table is None:
            raise StorageError(f"the Delta table {self.uri(name)} is gone", "publish again: kiban run")
        return table.to_pyarrow_table()

    def replace_at(self, name: str, data: pa.Table, base: int | None, tag: str) -> int:
        """Replace ``name``'s rows with ``data`` in one commit right after ``base`` (None: the table's first),
        failing (StorageError) when another commit came first. Returns the new version."""
        _library()
        from deltalake import CommitProperties, write_deltalake

        target: Any = self.uri(name) if base is None else self._open(name, base)
        try:
            write_deltalake(target, data, mode="overwrite", schema_mode="overwrite", storage_options=self.options,
                            commit_properties=CommitProperties(custom_metadata={META_TAG: tag}, max_commit_retries=0))
        except Exception as exc:
            raise StorageError(f"{self.uri(name)} moved on while it was replaced: {exc}",
                               "read it again and retry") from exc
        return 0 if base is None else base + 1

    def vacuum(self, name: str, retention_hours: float, keep: Sequence[int], dry_run: bool) -> list[str]:
        """Remove the files of ``name`` that no version younger than ``retention_hours`` and none of ``keep``
        names — files of no version at all (a writer killed before its commit) included. Returns them."""
        table = self._open(name)
        if table is None:
            return []
        try:
            removed = table.vacuum(retention_hours=int(retention_hours), dry_run=dry_run,
                                   enforce_retention_duration=False, full=True, keep_versions=sorted(set(keep)))
        except Exception as exc:
            raise StorageError(f"cannot vacuum {self.uri(name)}: {exc}", "check storage: in kiban.yml") from exc
        return sorted(str(r) for r in removed)

    def tag(self, name: str) -> str | None:
        """The data version the table's newest snapshot was published from (None: never published)."""
        value = self.metadata(name).get(META_TAG)
        return None if value is None else str(value)


def _reader(paths: Sequence[Path]) -> pa.RecordBatchReader:
    """The rows of ``paths`` as one stream with one schema (a load's files may differ: a column appeared)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    schema = delta_ready(pa.unify_schemas([pq.read_schema(p) for p in paths], promote_options="permissive"))
    dataset = ds.dataset([str(p) for p in paths], schema=schema, format="parquet")
    return pa.RecordBatchReader.from_batches(schema, dataset.to_batches())
