"""Bad schedules: every mistake in `jobs:` names kiban.yml:line, says what is wrong and how to fix it.

The loader's errors are checked in-process (fast); one test runs the real command to see exit code 2
and no traceback.
"""

from __future__ import annotations

import pytest

from kiban.errors import KibanError, ProjectError, ProjectErrors
from kiban.project import load_project

MODELS = {
    "models/warehouse/orders.sql": "select 1 as id\n",
    "models/mart/daily.sql": "select count(*) as n from warehouse.orders\n",
    "models/mart/daily.yml": "tags: [nightly]\n",
    "usecases/managers.yml": "assets: [mart.daily]\nneed: {by: \"08:30\"}\n",
}


def errors_of(make_project, jobs: str) -> list[str]:
    root = make_project({**MODELS, "kiban.yml": f"name: shop\ntimezone: Asia/Tokyo\n{jobs}"})
    with pytest.raises((ProjectError, ProjectErrors)) as caught:
        load_project(root)
    found = caught.value.errors if isinstance(caught.value, ProjectErrors) else [caught.value]
    return [str(e).replace(str(root) + "/", "") for e in found]


@pytest.mark.parametrize(("jobs", "expected"), [
    ('jobs:\n  nightly:\n    select: [mart.daily]\n    cron: "0 25 * * *"\n',
     ["kiban.yml:6:5: jobs.nightly.cron: '0 25 * * *' is not a valid cron expression: five fields, minute hour "
      "day month weekday (e.g. \"0 2 * * *\" for 02:00 every day)"]),
    ('jobs:\n  nightly:\n    select: [mart.daily]\n    cron: "0 2 * *"\n',
     ["kiban.yml:6:5: jobs.nightly.cron: '0 2 * *' is not a valid cron expression: five fields, minute hour "
      "day month weekday (e.g. \"0 2 * * *\" for 02:00 every day)"]),
    ('jobs:\n  nightly:\n    select: [mart.daly]\n    cron: "0 2 * * *"\n',
     ["kiban.yml:5:14: job nightly: no asset matches 'mart.daly'\n  hint: did you mean 'mart.daily'?"]),
    ('jobs:\n  nightly:\n    select: [+daily, "tag:nighty"]\n    cron: "0 2 * * *"\n',
     ["kiban.yml:5:22: job nightly: no asset has tag 'nighty'\n  hint: did you mean 'nightly'?"]),
    ('jobs:\n  nightly:\n    select: "layer:marts"\n    cron: "0 2 * * *"\n',
     ["kiban.yml:5:5: job nightly: unknown layer 'marts' in selector 'layer:marts'\n  hint: did you mean 'mart'?"]),
    ('jobs:\n  nightly:\n    select: [daily]\n    exclude: [ordres]\n    cron: "0 2 * * *"\n',
     ["kiban.yml:6:15: job nightly: no asset matches 'ordres'\n  hint: did you mean 'orders'?"]),
    ('jobs:\n  nightly:\n    select: [daily]\n    cron: "0 2 * * *"\n    calendar: jpn\n',
     ["kiban.yml:7:5: job nightly: unknown calendar 'jpn'\n  hint: did you mean 'jp'?"]),
    ('jobs:\n  nightly:\n    select: [daily]\n    cron: "0 2 * * *"\n    for: manager\n',
     ["kiban.yml:7:5: job nightly: unknown use case 'manager'\n  hint: did you mean 'managers'?"]),
    ('jobs:\n  nightly:\n    select: [daily]\n    cron: "0 2 * * *"\n    timezone: Asia/Tokio\n',
     ["kiban.yml:7:5: jobs.nightly.timezone: unknown timezone 'Asia/Tokio' (did you mean 'Asia/Tokyo'?)"]),
    ('jobs:\n  nightly:\n    select: [daily]\n    catch_up: latests\n    cron: "0 2 * * *"\n',
     ["kiban.yml:6:5: jobs.nightly.catch_up: 'latests' is not allowed; input should be 'skip', 'latest' or "
      "'all'"]),
    ('jobs:\n  nightly:\n    select: [daily]\n',
     ["kiban.yml:4:3: jobs.nightly: a job needs a `cron:` schedule, `sensors:`, or both"]),
    ('jobs:\n  nightly:\n    select: [daily]\n    cron: "0 2 * * *"\n    cronn: x\n',
     ["kiban.yml:7:5: unknown key 'cronn'\n  hint: did you mean 'cron'?"]),
    ('jobs:\n  files:\n    select: [daily]\n    sensors:\n      - asset: lake.pos\n',
     ["kiban.yml:7:9: job files: sensor 1: no asset matches 'lake.pos'"]),
    ('jobs:\n  files:\n    select: [daily]\n    sensors:\n      - landing: in\n        asset: daily\n',
     ["kiban.yml:7:9: jobs.files.sensors.0: a sensor watches either a folder (landing: PATH) or an asset "
      "(asset: NAME)"]),
    ('jobs:\n  files:\n    select: [daily]\n    sensors:\n      - landing: landing/partners/*.csv\n',
     ["kiban.yml:7:9: jobs.files.sensors.0: landing: is a folder, not a pattern ('landing/partners/*.csv' would "
      "watch nothing); write landing: landing/partners and pattern: \"*.csv\""]),
    ('scheduler: {lease: 5, renew: 4}\n',
     ["kiban.yml:3:1: scheduler: renew (4 s) must be at most half the lease (5 s), or a busy leader loses its "
      "lease"]),
])
def test_bad_jobs_name_the_line(make_project, jobs, expected):
    assert errors_of(make_project, jobs) == expected


def test_all_problems_are_reported_at_once(make_project):
    found = errors_of(make_project, 'jobs:\n  a:\n    select: [x1]\n    cron: "0 2 * * *"\n'
                                    '  b:\n    select: [daily]\n    cron: "0 2 * * *"\n    for: nobody\n')
    assert [e.split(": ")[0] for e in found] == ["kiban.yml:5:14", "kiban.yml:10:5"]


def test_an_unknown_job_on_the_command_line(make_project, cli):
    root = make_project({**MODELS, "kiban.yml": 'name: shop\njobs:\n  nightly:\n    cron: "0 2 * * *"\n'})
    done = cli("--project", root, "scheduler", "--once", "--job", "nigthly")
    assert done.returncode == 2
    assert "error: unknown job 'nigthly'" in done.stderr
    assert "did you mean 'nightly'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_schedule_stops_the_command_with_exit_2(make_project, cli):
    root = make_project({**MODELS, "kiban.yml": 'name: shop\njobs:\n  nightly:\n    cron: "every night"\n'})
    done = cli("--project", root, "jobs")
    assert done.returncode == 2
    assert "kiban.yml:4:5: jobs.nightly.cron: 'every night' is not a valid cron expression" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_project_without_jobs_has_nothing_to_schedule(make_project, cli):
    root = make_project(MODELS)
    done = cli("--project", root, "scheduler", "--once")
    assert done.returncode == 2
    assert "the project has no jobs" in done.stderr
    assert issubclass(ProjectError, KibanError)
