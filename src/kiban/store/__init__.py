"""The state store: runs, attempts, locks (and later checks, SLO evaluations, incidents).

``Store`` and its records (``kiban.store.store``, SQLAlchemy) load on first use, so that ``kiban.store.lite`` — the
standard library's store for hot paths — imports without SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiban.store.store import AttemptRecord, RunRecord, Store, utcnow

__all__ = ["AttemptRecord", "RunRecord", "Store", "utcnow"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kiban.store import store

        return getattr(store, name)
    raise AttributeError(f"module 'kiban.store' has no attribute {name!r}")
