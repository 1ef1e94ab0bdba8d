"""``kiban run --explain``: the plan a run would follow, with the reason for every model, and nothing built.

The plan is made exactly as a run makes it (``make_plan`` over the same versions, histories and checks), after
the lake views are refreshed over the committed loads, as a run does first. Nothing is collected, built,
published or recorded: the source tables a run would collect are listed, since what they bring may rebuild
more than the plan shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiban.engines import open_engine
from kiban.graph import build_graph, select
from kiban.project import Project
from kiban.run.inputs import plan_extra
from kiban.run.plan import Judge, Plan, make_plan
from kiban.run.runner import _collected_tables, _unavailable
from kiban.store import Store


@dataclass
class Explained:
    plan: Plan
    collect: list[str] = field(default_factory=list)  # source tables a run would collect first
    unavailable: dict[str, str] = field(default_factory=dict)  # lake table → why it cannot be read

    def steps(self) -> list[dict[str, Any]]:
        """One entry per selected asset, in the order a run takes them: what happens and why."""
        out: list[dict[str, Any]] = []
        building, fresh = set(self.plan.build), set(self.plan.fresh)
        for key in self.plan.order:
            if key in self.collect:
                out.append({"asset": key, "action": "collect", "reason": "sources change outside kiban"})
            elif key in building:
                action = "build whole" if key in self.plan.whole else "build"
                out.append({"asset": key, "action": action, "reason": self.plan.reasons.get(key, "")})
            elif key in fresh:
                out.append({"asset": key, "action": "fresh",
                            "reason": "its SQL, settings, checks and inputs are what it was built from"})
            else:
                out.append({"asset": key, "action": "lake",
                            "reason": self.unavailable.get(key, "read as it is")})
        return out


def explain(project: Project, select_: list[str], exclude: list[str], full_refresh: bool = False,
            judge: Judge | None = None) -> Explained:
    """The plan of ``kiban run SELECT… --exclude …`` as it would be made now."""
    graph = build_graph(project)
    selection = select(graph, select_, exclude)
    store = Store(project.state_url)
    try:
        engine = open_engine(project.warehouse_url, project.config.timezone)
        try:
            tables = _collected_tables(project, store)
            lake_assets = [graph.assets[k] for k in graph.order if graph.assets[k].layer == "lake"]
            versions = engine.prepare(lake_assets, tables)
            plan = make_plan(graph, selection, versions, engine.published(), full_refresh, judge,
                             plan_extra(graph, project.root, store, project.name, tables))
        finally:
            engine.close()
    finally:
        store.close()
    sources = project.source_tables() if project.sources else {}
    return Explained(plan, [k for k in selection if k in sources], _unavailable(graph, versions))
