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

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
