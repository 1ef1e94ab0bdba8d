"""A two-model project for the scheduler, and a launcher that records the jobs it starts instead of starting them
(shared by the scheduler and recovery tests)."""

from __future__ import annotations

LAKE = {"orders": "select 1 as id, date '2026-11-19' as day"}
MODELS = {
    "models/warehouse/orders.sql": "select * from lake.orders\n",
    "models/mart/daily.sql": "select day, count(*) as n from warehouse.orders group by day\n",
}


class FakeHandle:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code

    def run_id(self) -> str | None:
        return f"run-{self.pid}"

    def terminate(self) -> None:
        self.code = 130

    def wait(self, timeout: float) -> int | None:
        return self.code


class FakeLauncher:
    """Records which jobs were started; runs end when the test says so (or at once with ``instant``)."""

    def __init__(self, instant: bool = True) -> None:
        self.started: list[tuple[str, int]] = []
        self.resumed: list[bool] = []  # per start: `kiban run --resume` (a crashed run's recovery)
        self.handles: list[FakeHandle] = []
        self.instant = instant

    def __call__(self, project, job_name, job, tick_id, resume=False):
        self.started.append((job_name, tick_id))
        self.resumed.append(resume)
        handle = FakeHandle(1000 + len(self.handles))
        if self.instant:
            handle.code = 0
        self.handles.append(handle)
        return handle
