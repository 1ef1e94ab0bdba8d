"""Bad use-case files: every mistake gets a clear message naming file:line, exit code 2, no traceback.

The tests run the real ``kiban status`` in a child process, because what matters is what a person sees
at the process boundary. A good use-case file must load, with asset names resolved to keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kiban.project import load_project

KIBAN_YML = """\
name: shop
timezone: Asia/Tokyo
calendars:
  company:
    closed: [2026-12-31]
channels:
  ops-slack:
    type: slack
    url: https://hooks.example/ops
"""

BASE = {
    "kiban.yml": KIBAN_YML,
    "models/warehouse/orders.sql": "select order_id, amount\nfrom lake.raw_orders\n",
    "models/mart/daily_sales.sql": "select count(*) as orders\nfrom warehouse.orders\n",
    "models/mart/orders.sql": "select * from warehouse.orders\n",  # `orders` is in two layers: ambiguous
}
LAKE: dict[str, str | None] = {"raw_orders": None}

GOOD = """\
description: Store managers read yesterday's sales before the 09:00 meeting.
owner: data-team@shop.example
owner_notify: [ops-slack]
consumers:
  - name: Store managers
    notify: [ops-slack]
assets: [daily_sales]
need:
  by: "08:30"
  on: business_days
  calendar: company
  data_through: yesterday
target:
  attainment: 0.95
  window_days: 28
"""


@pytest.fixture
def project(make_project):
    """``project(usecases, kiban_yml=None)``: the base project plus ``usecases/NAME.yml`` files."""

    def build(usecases: dict[str, str], kiban_yml: str | None = None) -> Path:
        files = {**BASE, **{f"usecases/{name}.yml": text for name, text in usecases.items()}}
        if kiban_yml is not None:
            files["kiban.yml"] = kiban_yml
        return make_project(files, LAKE)

    return build


def problem(cli, root: Path) -> str:
    """Run ``kiban --project ROOT status`` and check what every project error must satisfy."""
    result = cli("--project", root, "status")
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert result.returncode == 2, both
    assert result.stderr.startswith("error: "), both
    assert result.stdout == "", "a project error must not print anything on stdout"
    return result.stderr


def where(root: Path, line: int, column: int | None = None, name: str = "morning_sales") -> str:
    """``/abs/path/usecases/NAME.yml:LINE[:COL]: `` as kiban prints it in front of a message."""
    text = f"{root / 'usecases' / f'{name}.yml'}:{line}"
    return (text if column is None else f"{text}:{column}") + ": "


def count_errors(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if line.startswith("error: "))


def need(by: str = '"08:30"', **more: str) -> str:
    lines = [f"  by: {by}", *(f"  {key}: {value}" for key, value in more.items())]
    return "need:\n" + "\n".join(lines) + "\n"


# --- a good use case ----------------------------------------------------------------------------------


def test_a_good_use_case_loads_with_asset_names_resolved(project):
    root = project({"morning_sales": GOOD})
    loaded = load_project(root)
    usecase = loaded.usecases["morning_sales"]
    assert usecase.config.assets == ("mart.daily_sales",)
    assert usecase.assets == ("mart.daily_sales",)
    assert usecase.path == root / "usecases" / "morning_sales.yml"
    assert usecase.config.need.deadline.hour == 8
    assert usecase.config.need.deadline.minute == 30
    assert usecase.config.need.calendar == "company"
    assert usecase.config.target.attainment == 0.95


def test_qualified_and_lake_asset_names_and_weekday_lists_load(project):
    text = "assets: [warehouse.orders, raw_orders, mart.orders]\n" + need(on="[mon, thu]", calendar="none")
    usecase = load_project(project({"weekly": text})).usecases["weekly"]
    assert usecase.assets == ("warehouse.orders", "lake.raw_orders", "mart.orders")
    assert usecase.config.need.on == ("mon", "thu")


def test_cron_schedules_load(project):
    text = "assets: [daily_sales]\n" + need(on='"cron: 0 10 * * 1"')
    assert load_project(project({"weekly": text})).usecases["weekly"].config.need.on == "cron: 0 10 * * 1"


def test_status_of_a_project_with_good_use_cases(project, cli):
    root = project({"morning_sales": GOOD})
    result = cli("--project", root, "status")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# --- assets -------------------------------------------------------------------------------------------


def test_unknown_asset_suggests_the_right_one(project, cli):
    root = project({"morning_sales": "assets: [daily_sale]\n" + need()})
    err = problem(cli, root)
    assert where(root, 1, 10) + "unknown asset 'daily_sale'" in err
    assert "hint: did you mean 'daily_sales'?" in err


def test_unknown_asset_in_a_block_list_names_its_own_line(project, cli):
    text = "# the morning meeting\n\nassets:\n  - mart.daily_sales\n  - mart.dayly_sales\n" + need()
    root = project({"morning_sales": text})
    err = problem(cli, root)
    assert where(root, 5, 5) + "unknown asset 'mart.dayly_sales'" in err
    assert "did you mean 'mart.daily_sales'?" in err
    assert count_errors(err) == 1


def test_ambiguous_asset_asks_for_its_layer(project, cli):
    root = project({"morning_sales": "assets: [daily_sales, orders]\n" + need()})
    err = problem(cli, root)
    assert where(root, 1, 23) + "'orders' is ambiguous: mart.orders, warehouse.orders" in err
    assert "hint: qualify it with its layer" in err


def test_no_assets(project, cli):
    root = project({"morning_sales": "assets: []\n" + need()})
    err = problem(cli, root)
    assert where(root, 1, 1) + "assets:" in err
    assert "at least 1 item" in err


# --- the time of day ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("by", "needle"), [
    ('"25:00"', "'25:00' is not a time of day; write it as HH:MM in quotes"),
    ('"8h30"', "'8h30' is not a time of day"),
    ('"08:60"', "'08:60' is not a time of day"),
    ("8.30", "8.3 is not a time of day; write it as HH:MM in quotes"),
    ("8:30", 'YAML read the unquoted time as the number 510; write it in quotes: "08:30"'),
])
def test_bad_time_of_day(project, cli, by, needle):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(by=by)})
    err = problem(cli, root)
    assert where(root, 3, 3) + "need.by: " + needle in err
    assert "Value error" not in err
    assert "valid string" not in err


def test_missing_time_of_day(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\nneed:\n  on: every_day\n"})
    err = problem(cli, root)
    assert where(root, 2, 1) + "missing required key 'need.by'" in err


def test_missing_need(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\n"})
    err = problem(cli, root)
    assert where(root, 1, 1) + "missing required key 'need'" in err


# --- the schedule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("on", "needle"), [
    ("sometimes", "'sometimes' is not a schedule; use business_days, every_day, weekdays"),
    ('"cron: 0 25 * * *"', "'0 25 * * *' is not a valid cron expression"),
    ('"cron: every monday"', "'every monday' is not a valid cron expression"),
    ("[mon, thurs]", "unknown weekday 'thurs'; use mon, tue, wed, thu, fri, sat, sun"),
    ("mon", "write a single weekday as a list: on: [mon]"),
    ("5", "'5' is not a schedule"),
])
def test_bad_schedule(project, cli, on, needle):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(on=on)})
    err = problem(cli, root)
    assert where(root, 4, 3) + "need.on: " + needle in err
    assert count_errors(err) == 1, err
    assert "Value error" not in err


@pytest.mark.parametrize("value", ["last_week", "yesterdays"])
def test_bad_data_through(project, cli, value):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(data_through=value)})
    err = problem(cli, root)
    assert where(root, 4, 3) + "need.data_through: " in err
    assert "'today', 'yesterday', 'previous_business_day' or 'none'" in err


# --- calendars ----------------------------------------------------------------------------------------


def test_unknown_calendar_suggests_a_defined_one(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(calendar="compnay")})
    err = problem(cli, root)
    assert where(root, 4, 3) + "unknown calendar 'compnay'" in err
    assert "hint: did you mean 'company'?" in err


def test_unknown_calendar_with_nothing_close_lists_the_builtins(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(calendar="gregorian")})
    err = problem(cli, root)
    assert where(root, 4, 3) + "unknown calendar 'gregorian'" in err
    assert "built-in calendars: jp, none" in err
    assert "calendars:` in kiban.yml" in err


def test_unknown_project_calendar_is_reported_once_at_its_line_in_kiban_yml(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(),
                    "evening_sales": "assets: [daily_sales]\n" + need(by='"18:00"')},
                   kiban_yml=KIBAN_YML + "calendar: jpp\n")
    err = problem(cli, root)
    assert f"{root / 'kiban.yml'}:10:1: unknown calendar 'jpp'" in err
    assert "did you mean 'jp'?" in err
    assert count_errors(err) == 1, "use cases that rely on the project's calendar must not repeat the error"


# --- channels -----------------------------------------------------------------------------------------


def test_unknown_owner_channel_suggests_the_right_one(project, cli):
    root = project({"morning_sales": "owner_notify: [ops-slak]\nassets: [daily_sales]\n" + need()})
    err = problem(cli, root)
    assert where(root, 1, 16) + "unknown channel 'ops-slak'" in err
    assert "hint: did you mean 'ops-slack'?" in err


def test_unknown_consumer_channel_with_nothing_close(project, cli):
    text = "consumers:\n  - name: Store managers\n    notify: [ops-slack, store-mail]\nassets: [daily_sales]\n"
    root = project({"morning_sales": text + need()})
    err = problem(cli, root)
    assert where(root, 3, 25) + "unknown channel 'store-mail'" in err
    assert "define channels under `channels:` in kiban.yml" in err
    assert count_errors(err) == 1


# --- targets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "needle"), [
    ("attainment: 1.5", "target.attainment: Input should be less than or equal to 1"),
    ("attainment: 0", "target.attainment: Input should be greater than 0"),
    ("attainment: -0.5", "target.attainment: Input should be greater than 0"),
    ("attainment: most", "target.attainment: Input should be a valid number"),
    ("window_days: 0", "target.window_days: Input should be greater than or equal to 1"),
    ("window_days: 1000", "target.window_days: Input should be less than or equal to 366"),
])
def test_impossible_target(project, cli, target, needle):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need() + f"target:\n  {target}\n"})
    err = problem(cli, root)
    assert where(root, 5, 3) + needle in err


# --- keys and YAML ------------------------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_right_one(project, cli):
    root = project({"morning_sales": "asets: [daily_sales]\n" + need()})
    err = problem(cli, root)
    assert where(root, 1, 1) + "unknown key 'asets'" in err
    assert "hint: did you mean 'assets'?" in err


def test_unknown_nested_key_suggests_the_right_one(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need(data_trough="yesterday")})
    err = problem(cli, root)
    assert where(root, 4, 3) + "unknown key 'data_trough'" in err
    assert "hint: did you mean 'data_through'?" in err


def test_unknown_key_in_a_target(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\n" + need() + "target:\n  attainmnet: 0.9\n"})
    err = problem(cli, root)
    assert where(root, 5, 3) + "unknown key 'attainmnet'" in err
    assert "did you mean 'attainment'?" in err


def test_broken_yaml_names_the_line(project, cli):
    root = project({"morning_sales": "assets: [daily_sales\n" + need()})
    err = problem(cli, root)
    assert where(root, 2, 5) + "invalid YAML: expected ',' or ']'" in err


def test_broken_indentation(project, cli):
    root = project({"morning_sales": "assets: [daily_sales]\nneed:\n  by: \"08:30\"\n   on: every_day\n"})
    err = problem(cli, root)
    assert where(root, 4, 4) + "invalid YAML: expected <block end>" in err


def test_a_use_case_that_is_not_a_mapping(project, cli):
    root = project({"morning_sales": "- daily_sales\n- 08:30\n"})
    err = problem(cli, root)
    assert where(root, 1, 1) + "expected a mapping" in err


# --- several files, several problems ------------------------------------------------------------------


def test_every_problem_in_every_file_is_reported_at_once(project, cli):
    root = project({
        "morning_sales": GOOD,
        "evening_sales": "assets: [daily_sale]\n" + need(by='"25:00"'),
        "weekly": "owner_notify: [pager]\nassets: [daily_sales]\n" + need(calendar="jpp"),
    })
    err = problem(cli, root)
    assert where(root, 3, 3, "evening_sales") + "need.by:" in err
    assert where(root, 1, 16, "weekly") + "unknown channel 'pager'" in err
    assert where(root, 5, 3, "weekly") + "unknown calendar 'jpp'" in err
    assert count_errors(err) == 3, err  # the bad time stops evening_sales before its assets are checked
    assert "morning_sales" not in err


def test_two_files_with_the_same_use_case_name(project, cli):
    root = project({"morning_sales": GOOD})
    (root / "usecases" / "morning_sales.yaml").write_text(GOOD, encoding="utf-8")
    err = problem(cli, root)
    assert "two use cases are both named morning_sales" in err
