"""Hold-out attacks on the service-level promise: verdicts that must not depend on how they are asked."""

from __future__ import annotations

from datetime import date, datetime

from kiban.slo.service import assess
from tests.helpers.slo import LAKE, MODELS, opened
from tests.slo_history import add_run


def _quarterly(project_dir, data_through: str = "none"):
    files = dict(MODELS)
    files["usecases/morning.yml"] = (
        "assets: [daily_sales]\n"
        f"need: {{by: '08:30', on: 'cron: 0 10 1 1,4,7,10 *', calendar: none, data_through: {data_through}}}\n"
        "target: {attainment: 0.9, window_days: 10}\n")
    return opened(project_dir(files, LAKE))


def test_a_quarterly_delivery_days_before_its_deadline_is_met(project_dir):
    """The window of a due day opens at the previous due day's deadline, however far back that is: a quarterly
    report built three days early is delivered (it used to get a one-day window, and fail, because the previous
    due day lay more than a month back)."""
    with _quarterly(project_dir) as (project, graph, store):
        add_run(store, project.name, "early", datetime(2026, 3, 28, 17, 0),
                [("warehouse.orders", "success", 30, None, None),
                 ("mart.daily_sales", "success", 60, date(2026, 3, 28), None)])
        now = datetime(2026, 4, 1, 3, 0)  # 12:00 JST, after the 08:30 deadline
        result = assess(project, graph, store, now)
        verdict = next(v for v in result.verdicts if v.due_date == date(2026, 4, 1))
        assert verdict.evidence["window_start"] == datetime(2025, 12, 31, 23, 30).isoformat()  # 2026-01-01 08:30 JST
        assert verdict.verdict == "met"
        assert verdict.satisfied_at == datetime(2026, 3, 28, 17, 1)
