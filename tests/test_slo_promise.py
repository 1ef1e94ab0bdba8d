"""Hold-out attacks on the service-level promise: verdicts that must not depend on how they are asked."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from kiban.slo.service import assess
from tests.helpers.slo import LAKE, MODELS, opened
from tests.slo_history import add_check, add_run


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


def test_a_pass_of_one_check_does_not_clear_or_keep_another(project_dir):
    """"bad_data: … and no later run of *that* check passed." The night's build is refused by check ``a``; the
    re-run after a fix passes ``a`` and is refused by ``b``. A use case that needs only ``a`` is not ``bad_data``
    naming ``a`` (it was: any later failure kept ``a``'s cleared failure alive) — its data simply did not come;
    one that needs every check is ``bad_data`` by ``b`` alone."""
    files = dict(MODELS)
    files["models/mart/daily_sales.yml"] = ("time_column: order_date\nchecks:\n"
                                           "  - {name: a, not_null: order_date}\n  - {name: b, not_null: n}\n")
    need = "need: {by: '08:30', on: every_day, calendar: none, data_through: yesterday, checks: CHECKS}\n"
    files["usecases/morning.yml"] = "assets: [daily_sales]\n" + need.replace("CHECKS", "[a]")
    files["usecases/audit.yml"] = "assets: [daily_sales]\n" + need.replace("CHECKS", "all")
    day = date(2026, 11, 10)
    with opened(project_dir(files, LAKE)) as (project, graph, store):
        for run, start, statuses in (("night", datetime(2026, 11, 9, 17, 0), {"a": "fail", "b": "pass"}),
                                     ("rerun", datetime(2026, 11, 9, 18, 0), {"a": "pass", "b": "fail"})):
            refused = next(name for name, status in statuses.items() if status == "fail")
            ended = add_run(store, project.name, run, start,
                            [("warehouse.orders", "success", 30, None, None),
                             ("mart.daily_sales", "failed", 60, None, f"check {refused} failed")])
            for name, status in statuses.items():  # one evaluation: every check of the table at one moment
                add_check(store, "mart.daily_sales", name, status, ended - timedelta(seconds=1))
        result = assess(project, graph, store, datetime(2026, 11, 10, 3, 0))  # 12:00 JST, after the deadline
        verdicts = {v.usecase: v for v in result.verdicts if v.due_date == day}
        assert verdicts["morning"].verdict == "failed", verdicts["morning"].evidence
        assert "failed_checks" not in verdicts["morning"].evidence
        assert verdicts["audit"].verdict == "bad_data"
        assert verdicts["audit"].evidence["failed_checks"] == ["mart.daily_sales: b"]
