"""The engine protocol: where SQL runs. DuckDB is the default; others implement the same calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from kiban.project import Asset

EMPTY_LAKE = "empty"  # the data version of a lake folder that has no data files yet
UNREADABLE_LAKE = "unreadable: "  # prefix of the data version of a lake folder whose files cannot be read

# Called on the freshly built, not yet published relation: (session, relation name). Raising blocks
# the publish and leaves the previous version in place. The data-quality checks plug in here.
AuditHook = Callable[["Session", str], None]


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

    def session(self) -> Session: ...

    def prepare(self, lake_assets: list[Asset]) -> dict[str, str]:
        """Create schemas, expose the lake, drop leftovers of killed runs.

        Returns the data version of every lake asset.
        """

    def published(self) -> dict[str, str]:
        """Fingerprint of the published version of each asset (``layer.name`` → fingerprint)."""

    def build(self, session: Session, asset: Asset, fingerprint: str, tag: str,
              audit: AuditHook | None = None) -> BuildResult:
        """Build ``asset`` under a temporary name, audit it, and publish it atomically."""

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

    def close(self) -> None: ...
