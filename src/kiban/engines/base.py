"""The engine protocol: where SQL runs. DuckDB is the default; others implement the same calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from kiban.errors import ConfigError, KibanError
from kiban.project import Asset
from kiban.project.macros import Macro

EMPTY_LAKE = "empty"  # the data version of a lake folder that has no data files yet
UNREADABLE_LAKE = "unreadable: "  # prefix of the data version of a lake folder whose files cannot be read
DATA_TOKEN = "+"  # a published version <fingerprint>+<token>: its data changed without a rebuild (a backfill)

# Called on the freshly built, not yet published relation: (session, relation name). Raising blocks
# the publish and leaves the previous version in place. The data-quality checks plug in here.
AuditHook = Callable[["Session", str], None]


class PythonModels(Protocol):
    """What runs a Python model for a build: handed to ``Engine.build`` by the run (``kiban.python.models``), as
    the audit hook is. Engines know nothing of Python models, ML registries or the project's folder."""

    def produce(self, cursor: Any, asset: Asset, fingerprint: str) -> Any:
        """Run the model's function, its inputs read through ``cursor``; the Arrow table to publish."""

    def settle(self, cursor: Any, asset: Asset) -> None:
        """After the publish committed or rolled back: whatever follows it (a training's registry entry)."""


@dataclass(frozen=True)
class CollectedTable:
    """A lake table that kiban collects (kiban.collect): its committed files, from the manifests in the store.

    The view ``lake.<name>`` reads exactly ``files``; ``lake.<name>_latest`` keeps the newest row per
    primary key (deletions removed) and ``lake.<name>_history`` gives versions valid_from/valid_to (scd2).
    """

    version: str  # the newest load that landed files ("" while none has): the table's data version
    files: tuple[str, ...]  # absolute paths of the committed Parquet files
    primary_key: tuple[str, ...] = ()
    cursor: str | None = None
    deletes: bool = False  # rows carry _deleted
    history: bool = False  # history: scd2
    changes: str = ""  # a digest of its loads that were not appends (retracted, replayed): '' when none


COLLECTED_VERSION = "load:"  # prefix of a collected table's data version (and of its views' comments)
FENCED = "fenced: "  # prefix of the error of a publish refused because a newer claim holds the asset's fence


class Fenced(Exception):
    """A worker's claim on an asset was taken over (a newer fencing token): it must not publish."""


@dataclass(frozen=True)
class BuildResult:
    rows: int | None
    nbytes: int | None
    watermark: date | None = None  # max(time_column) of the new version, when the model declares one


class Session(Protocol):
    """One worker thread's connection to the engine."""

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]: ...

    def interrupt(self) -> None:
        """Stop the statement running now (called from another thread)."""

    def close(self) -> None: ...


class Engine(Protocol):
    name: str
    full_refresh: bool  # incremental models rebuild their whole table instead of their recent partitions
    rebuild_whole: set[str]  # incremental models of this run built whole (older input data changed: Plan.whole)

    def session(self) -> Session: ...

    def prepare(self, lake_assets: list[Asset],
                collected: Mapping[str, CollectedTable] | None = None) -> dict[str, str]:
        """Create schemas, expose the lake, drop leftovers of killed runs.

        ``collected``: the committed files of collected lake tables (by asset key). A collected table not in it
        keeps the views it has. Returns the data version of every lake asset.
        """

    def define_macros(self, macros: Sequence[Macro]) -> None:
        """Make the project's macros (``macros/*.sql``) exactly the warehouse's: create or replace each, drop
        the ones the project no longer has. Engines other than DuckDB refuse any."""

    def published(self) -> dict[str, str]:
        """Fingerprint of the published version of each asset (``layer.name`` → fingerprint)."""

    def build(self, session: Session, asset: Asset, fingerprint: str, tag: str,
              audit: AuditHook | None = None, python: PythonModels | None = None) -> BuildResult:
        """Build ``asset`` under a temporary name, audit it, and publish it atomically (a Python model: the table
        ``python`` produces; an engine without Python models refuses them)."""

    def partition_blocker(self, asset: Asset) -> str | None:
        """Why the incremental ``asset`` cannot take single partitions now (not built, code changed); None: it can."""

    def build_partition(self, session: Session, asset: Asset, start: datetime, end: datetime,
                        audit: AuditHook | None = None) -> BuildResult:
        """Replace the rows of one time partition [start, end) of a published incremental model atomically."""

    def processed_partitions(self, asset: Asset) -> dict[datetime, int]:
        """Partitions of an incremental model as published: start → rows."""

    def watermark(self, asset: Asset) -> date | None:
        """How far the published data of ``asset`` reaches (max of its time_column)."""

    def retryable(self, error: BaseException) -> bool:
        """Whether another attempt could succeed (I/O, locks) or is pointless (SQL errors)."""

    def share(self, running: int, light: bool = False) -> None:
        """``running`` builds run at once now: an engine that runs them in this process shares its cores out
        (``light``: each of them is small enough for one thread; kiban.run.sizing)."""

    def close(self) -> None: ...


class NotDuckDB:
    """What the engines other than DuckDB share (PostgreSQL, Spark): no DuckDB macros. The partition methods
    below are the defaults of an engine that rebuilds incremental models whole; PostgreSQL and Spark override
    them (``engines.postgres_partitions``, ``engines.spark_partitions``)."""

    label = ""  # how messages name the engine: PostgreSQL, Spark

    def define_macros(self, macros: Sequence[Macro]) -> None:
        """DuckDB's macros cannot run here (``engines.dialect.refuse_unportable`` refuses them first)."""
        if macros:
            raise ConfigError(f"macros/ holds DuckDB macros, which the {self.label} warehouse cannot run",
                              "write the logic into the models, or use DuckDB")

    def share(self, running: int, light: bool = False) -> None:
        """The server runs the builds: its own scheduler shares its cores."""

    def partition_blocker(self, asset: Asset) -> str | None:
        return f"the {self.label} engine rebuilds incremental models whole (`kiban run`), not partition by partition"

    def build_partition(self, session: Session, asset: Asset, start: datetime, end: datetime,
                        audit: AuditHook | None = None) -> BuildResult:
        raise KibanError(f"{asset.key}: {self.partition_blocker(asset)}")

    def processed_partitions(self, asset: Asset) -> dict[datetime, int]:
        return {}
