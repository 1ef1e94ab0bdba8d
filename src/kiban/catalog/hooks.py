"""What a run tells the catalog: the listeners a front end adds to ``run_project`` (CLI and web alike)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiban.catalog.openlineage import emitter_for

if TYPE_CHECKING:
    from kiban.project import Project


def catalog_listeners(project: Project) -> list[Any]:
    """OpenLineage events (when ``kiban.yml`` has ``openlineage:``) and fresh profiles of what the run published
    (once the project has been profiled with ``kiban docs profile``)."""
    from kiban.catalog.profile import ProfileAfterRun

    listeners: list[Any] = [ProfileAfterRun(project)]
    emitter = emitter_for(project)
    if emitter is not None:
        listeners.append(emitter)
    return listeners
