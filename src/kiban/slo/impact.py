"""Impact and root cause: who is hurt by a broken asset, and what broke a missed use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiban.graph import Graph
from kiban.project import Project
from kiban.status import AttemptStatus


@dataclass(frozen=True)
class Impact:
    asset: str
    usecases: list[str]
    consumers: list[dict[str, Any]] = field(default_factory=list)  # name, team, contact, use case
    owners: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)


def blast_radius(project: Project, graph: Graph, asset: str) -> Impact:
    """Every use case (and its consumers) that reads ``asset`` or anything built from it."""
    reach = graph.downstream(asset) | {asset}
    usecases = sorted(name for name, u in project.usecases.items() if reach & set(u.assets))
    consumers = [{"name": c.name, "team": c.team, "contact": list(c.contact), "usecase": name}
                 for name in usecases for c in project.usecases[name].config.consumers]
    owners = sorted({o for name in usecases if (o := project.usecases[name].config.owner)})
    return Impact(asset, usecases, consumers, owners, graph.sorted(reach - {asset}))


def root_cause(graph: Graph, failures: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The failure that explains the others: the upstream-most *failed* asset (skips follow from it)."""
    failed = [f for f in failures if f["status"] == AttemptStatus.FAILED]
    pool = failed or failures
    if not pool:
        return None
    keys = {f["asset"] for f in pool}
    roots = [f for f in pool if not (graph.upstream(f["asset"]) & keys)]
    order = {k: i for i, k in enumerate(graph.order)}
    return min(roots or pool, key=lambda f: order.get(f["asset"], 0))


def workaround(root: dict[str, Any] | None, usecase_assets: tuple[str, ...], last_run_failed: bool) -> str:
    """The one command that most likely repairs it."""
    if root is not None and last_run_failed:
        return "kiban run --resume"
    if root is not None:
        return f"kiban run {root['asset']}+"
    return "kiban run " + " ".join(f"+{a}" for a in usecase_assets)


WAIT_FOR_LOCK = 7200  # seconds a suggested repair may wait for the assets a run in progress still builds


def repair(found: dict[str, Any] | None, usecase_assets: tuple[str, ...], busy: bool = False,
           eta: str | None = None) -> tuple[str | None, str]:
    """The workaround for a root cause: (the command, or None when none helps now; what to do, in words).

    Chosen from what must be rebuilt. ``kiban run +ASSET`` rebuilds exactly what is missing or stale on the
    use case's path (fresh assets are skipped by fingerprint) — from the first bad upstream on, unlike
    ``--resume``, which re-runs only the failed assets and reads what is already published. With a run in
    progress (``busy``) the command waits (``--wait``) for the assets of its path that run still builds —
    only those: locks are per asset, and the run holding a DuckDB file builds the rest for it at once.
    """
    wait = f"--wait {WAIT_FOR_LOCK} " if busy else ""
    command = f"kiban run {wait}" + " ".join(f"+{a}" for a in usecase_assets)
    queued = " (it waits only for what the run in progress still builds on that path)" if busy else ""
    kind = (found or {}).get("kind") or (found or {}).get("status")
    asset = (found or {}).get("asset", "?")
    if kind == "bad_data":
        return command, (f"fix the data of {asset} first; then `{command}` rebuilds it and everything after it "
                         f"on the use case's path{queued}")
    if kind in ("late_source", "late"):
        return command, (f"wait for {asset} to arrive; then `{command}` builds the rest{queued} "
                         f"(a run before it arrives would only rebuild yesterday's data)")
    if kind == "partial_day":
        return command, (f"`{command}` collects {asset} again, now that the day is over, and rebuilds (or confirms) "
                         f"everything after it on the use case's path{queued}")
    if kind == "slow":
        return None, (f"wait: {asset} is still running{f', expected ready at {eta}' if eta else ''}; "
                      "restarting it would start the chain again")
    if kind == "failed":
        return command, (f"if the failure of {asset} is not transient, fix it first; then `{command}` rebuilds "
                         f"only what is missing{queued}")
    return command, f"`{command}` builds what is missing{queued}"
