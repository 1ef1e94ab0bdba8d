"""What a run tells the catalog: the listeners a front end adds to ``run_project`` (CLI and web alike)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kiban.catalog.openlineage import emitter_for
from kiban.status import AttemptStatus
from kiban.store import Store, lite

if TYPE_CHECKING:
    from kiban.project import Project


def catalog_listeners(project: Project) -> list[Any]:
    """OpenLineage events (when ``kiban.yml`` has ``openlineage:``) and fresh profiles of what the run published
    (once the project has been profiled with ``kiban docs profile``)."""
    listeners: list[Any] = [ProfileAfterRun(project)]
    emitter = emitter_for(project)
    if emitter is not None:
        listeners.append(emitter)
    return listeners


log = logging.getLogger(__name__)


class ProfileAfterRun:
    """A run listener: when the run has finished, profile what it published (never fails the run). Whether the
    project uses profiles is asked without SQLAlchemy on a SQLite store (``kiban.store.lite``): the profiling
    itself (``kiban.catalog.profile``) loads only when it does."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.published: list[str] = []
        self.error: str | None = None

    def __call__(self, event: Any) -> None:
        if event.kind == "asset_finished" and event.status == AttemptStatus.SUCCESS and event.asset:
            self.published.append(event.asset)
        elif event.kind == "run_finished" and self.published:
            self.profile()

    def profile(self) -> None:
        store = Store(self.project.state_url)
        try:
            if store.lite is not None:
                with store.lite_read() as conn:
                    if not lite.profiles_in_use(conn, self.project.name):
                        return  # the project does not use profiles (yet): `kiban docs profile` starts them
            from kiban.catalog.profile import profile_assets, profiled_assets

            if not profiled_assets(store, self.project.name):
                return
            profile_assets(self.project, store, self.published)
        except Exception as exc:  # profiles are documentation: a failure is reported, the run stands
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("profiles after the run of %s failed", self.project.name, exc_info=True)
        finally:
            store.close()
