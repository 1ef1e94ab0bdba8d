"""The state store: runs, attempts, locks (and later checks, SLO evaluations, incidents)."""

from kiban.store.store import AttemptRecord, RunRecord, Store, utcnow

__all__ = ["AttemptRecord", "RunRecord", "Store", "utcnow"]
