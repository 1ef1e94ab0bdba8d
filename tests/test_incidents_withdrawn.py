"""Incidents of use cases that are removed, renamed or redefined: closed as withdrawn, never left open, never
presented as a recovery — and never those of another project sharing the state store.

The generator edits the project (delete, rename, re-add under an old name, change the deadline, the days, the
assets) between service-level checks over a few days of fixed history; the oracle, after every check: the open
incidents are exactly the (use case, day) pairs of *currently defined* use cases whose verdict is a standing breach.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from kiban.graph import build_graph
from kiban.incidents import Incident, IncidentLog
from kiban.project import load_project
from kiban.slo.retire import STANDING
from kiban.slo.service import INCIDENT_DAYS, check
from kiban.status import IncidentResolution, IncidentStatus
from kiban.store import Store
from kiban.store.schema import notifications
from tests.helpers.slo import FIRST, LAKE, MODELS, utc_deadline
from tests.slo_history import add_run

BASE = {k: v for k, v in MODELS.items() if not k.startswith("usecases/")}
DAYS = [date(2026, 11, 2) + timedelta(days=i) for i in range(5)]


def usecase_yml(asset: str = "daily_sales", by: str = "08:30", on: str = "every_day") -> str:
    through = "yesterday" if asset == "daily_sales" else "none"
    return (f"description: {asset} by {by}.\nowner: data-team\nassets: [{asset}]\n"
            f"need: {{by: \"{by}\", on: {on}, calendar: none, data_through: {through}}}\n"
            f"target: {{attainment: 0.9, window_days: 10}}\n")


def nightly_of(store: Store, project: str, day: date, fail: bool) -> None:
    """The 02:00 JST run of ``day`` for ``project``: publishes daily_sales 10 minutes later, or fails."""
    start = utc_deadline(day) - timedelta(hours=6, minutes=30)
    steps = [("warehouse.orders", "failed" if fail else "success", 300, None,
              "IO Error: No space left on device" if fail else None),
             ("mart.daily_sales", "skipped" if fail else "success", 600, None if fail else day - timedelta(days=1),
              "upstream warehouse.orders failed" if fail else None)]
    add_run(store, project, f"{project}-{day}", start, steps)


def only_morning(root: Path, store: Store, day: date) -> None:
    """Just ``morning``, delivered on time every day before ``day``: the check sends only what is about ``day``
    (a channel's rate limit would otherwise swallow the message under test)."""
    for name in ("noon", "other"):
        (root / "usecases" / f"{name}.yml").unlink()
    for before in range(2, day.day):
        nightly_of(store, "test", date(day.year, day.month, before), fail=False)


def loaded(root: Path):
    project = load_project(root)
    return project, build_graph(project)


def failed_morning(root: Path, store: Store) -> tuple[date, datetime, IncidentLog, Incident]:
    """A first run, then a failed night before 2026-11-10's deadline, judged half an hour after it: the morning
    use case's incident, open."""
    add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
    day = date(2026, 11, 10)
    nightly_of(store, "test", day, fail=True)
    now = utc_deadline(day) + timedelta(minutes=30)
    check(*loaded(root), store, now, notify=False)
    log = IncidentLog(store, "test")
    incident = log.open_for("morning", day)
    assert incident is not None
    return day, now, log, incident


def open_incidents(store: Store, project: str) -> set[tuple[str, date]]:
    return {(i.usecase, i.due_date) for i in IncidentLog(store, project).unresolved()}


def breaches(result, project) -> set[tuple[str, date]]:
    start = result.today - timedelta(days=INCIDENT_DAYS - 1)
    return {(v.usecase, v.due_date) for v in [*result.verdicts, *result.ahead]
            if v.verdict in STANDING and v.due_date >= start and v.usecase in project.usecases}


def assert_oracle(store: Store, result, project, story: list[str]) -> None:
    """Open incidents == defined use cases in breach, but for two rules older than this change (kept, and said in
    docs/incidents.md): an at-risk incident whose day is back to pending stays open until delivered or missed, and
    an incident closed as recovered or repaired is not reopened by a later breach of the same day."""
    log = IncidentLog(store, "test")
    verdicts = {(v.usecase, v.due_date): v.verdict for v in [*result.verdicts, *result.ahead]}
    unresolved = log.unresolved()
    waiting = {(i.usecase, i.due_date) for i in unresolved if i.kind == "at_risk"
               and verdicts.get((i.usecase, i.due_date)) == "pending"}
    closed = {(i.usecase, i.due_date) for i in log.recent(include_resolved=True, limit=1000)
              if i.status == IncidentStatus.RESOLVED and i.resolution not in ("retired", "redefined")}
    opened = {(i.usecase, i.due_date) for i in unresolved}
    wanted = breaches(result, project)
    said = "\n".join(story)
    assert {u for u, _ in opened} <= set(project.usecases), said  # nothing open for a use case that is gone
    assert opened - wanted <= waiting, said
    assert wanted - opened <= closed, said


@pytest.fixture
def root(project_dir) -> Path:
    return project_dir({**BASE, "usecases/morning.yml": usecase_yml(), "usecases/noon.yml": usecase_yml(by="12:00"),
                        "usecases/other.yml": usecase_yml("other", by="09:00")}, LAKE)


def edit(rng: random.Random, root: Path, defined: dict[str, str], gone: dict[str, str]) -> str:
    """One random edit of the project's use cases; returns what it did (for the failure message)."""
    folder = root / "usecases"
    choices = ["delete", "rename", "deadline", "days", "assets"] if defined else []
    choices += ["readd"] if gone else []
    what = rng.choice(choices or ["readd"])
    if what == "readd":
        name = rng.choice(sorted(gone))
        text = gone.pop(name) if rng.random() < 0.5 else usecase_yml(by=rng.choice(["08:30", "10:00"]))
        (folder / f"{name}.yml").write_text(text)
        defined[name] = text
        return f"re-add {name}"
    name = rng.choice(sorted(defined))
    if what in ("delete", "rename"):
        gone[name] = defined.pop(name)
        (folder / f"{name}.yml").unlink()
        if what == "rename":
            new = f"{name}_{rng.randrange(100)}"
            (folder / f"{new}.yml").write_text(gone[name])
            defined[new] = gone[name]
        return f"{what} {name}"
    asset = "other" if "[other]" in defined[name] else "daily_sales"
    by = defined[name].split('by: "')[1][:5]
    on = "every_day"
    if what == "deadline":
        by = rng.choice(["06:00", "08:30", "12:00", "23:00"])
    elif what == "days":
        on = rng.choice(["[mon, wed, fri]", "[tue, thu]", "every_day"])
    else:
        asset = "other" if asset == "daily_sales" else "daily_sales"
    defined[name] = usecase_yml(asset, by, on)
    (folder / f"{name}.yml").write_text(defined[name])
    return f"{what} {name}: {asset} by {by} on {on}"


@pytest.mark.parametrize("seed", range(8))
def test_open_incidents_are_the_defined_use_cases_in_breach_through_any_edits(root, seed):
    rng = random.Random(seed)
    project, graph = loaded(root)
    store = Store(project.state_url)
    try:
        add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
        for day in DAYS:  # the whole history up front: a verdict moves only with time and with the edits
            nightly_of(store, "test", day, fail=rng.random() < 0.6)
        defined = {p.stem: p.read_text() for p in (root / "usecases").glob("*.yml")}
        gone: dict[str, str] = {}
        now = datetime(2026, 11, 1, 20)
        story: list[str] = []
        while now < datetime(2026, 11, 6, 12):
            if rng.random() < 0.6:
                story.append(edit(rng, root, defined, gone))
                project, graph = loaded(root)
            now += timedelta(hours=rng.choice([1, 3, 5, 8]), minutes=rng.randrange(60))
            story.append(f"check at {now}")
            result = check(project, graph, store, now, notify=False)
            assert_oracle(store, result, project, story)
        log = IncidentLog(store, "test")
        for incident in log.recent(include_resolved=True, limit=1000):
            kinds = [e.kind for e in log.events(incident.id)]
            if incident.usecase not in project.usecases:  # gone: closed, and the last word is how
                assert incident.status == IncidentStatus.RESOLVED, kinds
                assert kinds[-1] == incident.resolution, kinds
            for withdrawn, after in itertools.pairwise(kinds):  # nothing is said of a withdrawn one
                assert withdrawn not in ("retired", "redefined") or after == "reopened", kinds
    finally:
        store.close()


def test_a_removed_use_case_closes_its_incident_as_retired_without_a_recovery_message(root, http_hook):
    port, received = http_hook
    config = (f"channels:\n  oncall: {{type: webhook, url: 'http://127.0.0.1:{port}/oncall'}}\n"
              f"  ops: {{type: webhook, url: 'http://127.0.0.1:{port}/ops'}}\n"
              "oncall:\n  start: 2026-10-01\n  notify: [oncall]\n  people:\n    - {name: aki}\n")
    (root / "kiban.yml").write_text((root / "kiban.yml").read_text() + config)
    (root / "usecases/morning.yml").write_text(usecase_yml().replace("owner: data-team\n",
                                                                     "owner: data-team\nowner_notify: [ops]\n"))
    project, graph = loaded(root)
    store = Store(project.state_url)
    try:
        add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
        day = date(2026, 11, 10)
        only_morning(root, store, day)
        project, graph = loaded(root)
        nightly_of(store, "test", day, fail=True)
        now = utc_deadline(day) + timedelta(minutes=30)
        opened = check(project, graph, store, now)
        incident = next(i for i in opened.incidents if i.usecase == "morning" and i.due_date == day)
        assert incident.impact["promise"]["by"] == "08:30"
        received.clear()
        # a page that failed is waiting in the outbox for its retry
        with store.engine.begin() as conn:
            conn.execute(notifications.insert().values(
                channel="oncall", dedupe_key=f"incident:test:morning:{day}:failed:owners", subject="s",
                status="failed", attempts=1, created_at=now, retry_at=now + timedelta(minutes=1), payload="{}"))
        (root / "usecases/morning.yml").unlink()
        (root / "usecases/morning_v2.yml").write_text(usecase_yml())  # a rename: same assets and deadline
        project, graph = loaded(root)
        result = check(project, graph, store, now + timedelta(minutes=5))
        log = IncidentLog(store, "test")
        closed = log.require(incident.id)
        assert (closed.status, closed.resolution) == (IncidentStatus.RESOLVED, IncidentResolution.RETIRED)
        last = log.events(incident.id)[-1]
        assert last.kind == "retired"
        assert "no longer defined in the project" in last.message
        assert "not a recovery" in last.message
        assert "morning_v2 has the same assets and deadline" in last.message
        assert closed in result.incidents
        # on-call hears it as a withdrawal; nobody hears "the data is ready"; the owners' channel went with it
        assert all("ready" not in (m.get("subject") or "") for m in received)
        subjects = [m.get("subject") for m in received if "withdrawn" in (m.get("subject") or "")]
        assert subjects == [f"[kiban] incident #{incident.id} morning {day}: withdrawn, use case no longer defined"]
        with store.engine.connect() as conn:
            row = conn.execute(notifications.select().where(
                notifications.c.dedupe_key == f"incident:test:morning:{day}:failed:owners",
                notifications.c.status == "failed")).first()
        assert row.retry_at is None
        assert "closed" in row.error  # no reminder of a closed incident
        # the renamed one is judged on its own, from its next due day: nothing opened for it today
        assert not [i for i in log.recent() if i.usecase == "morning_v2"]
        again = check(project, graph, store, now + timedelta(minutes=10))
        assert again.incidents == []
        assert log.require(incident.id).resolution == IncidentResolution.RETIRED
    finally:
        store.close()


def test_a_re_added_use_case_reopens_its_withdrawn_incident_when_still_in_breach(root):
    store = Store(loaded(root)[0].state_url)
    try:
        _day, now, log, incident = failed_morning(root, store)
        assert incident.status == IncidentStatus.OPEN
        text = (root / "usecases/morning.yml").read_text()
        (root / "usecases/morning.yml").unlink()
        check(*loaded(root), store, now + timedelta(minutes=5), notify=False)
        assert log.require(incident.id).resolution == IncidentResolution.RETIRED
        (root / "usecases/morning.yml").write_text(text)
        check(*loaded(root), store, now + timedelta(minutes=10), notify=False)
        back = log.require(incident.id)
        assert (back.status, back.resolution) == (IncidentStatus.OPEN, None)
        assert [e.kind for e in log.events(incident.id)] == ["failed", "retired", "reopened", "failed"]
    finally:
        store.close()


@pytest.mark.parametrize("change", ["other days", "met by new assets"])
def test_a_redefined_use_case_closes_its_incident_as_redefined_not_recovered(root, http_hook, change):
    port, received = http_hook
    (root / "kiban.yml").write_text((root / "kiban.yml").read_text()
                                    + f"channels:\n  ops: {{type: webhook, url: 'http://127.0.0.1:{port}/ops'}}\n")
    owned = "owner: data-team\nowner_notify: [ops]\n"
    (root / "usecases/morning.yml").write_text(usecase_yml().replace("owner: data-team\n", owned))
    project, graph = loaded(root)
    store = Store(project.state_url)
    try:
        add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
        day = date(2026, 11, 10)  # a Tuesday
        only_morning(root, store, day)
        project, graph = loaded(root)
        nightly_of(store, "test", day, fail=True)
        if change == "met by new assets":  # warehouse.orders failed, but mart.other was built in time
            add_run(store, "test", "other-run", utc_deadline(day) - timedelta(hours=2),
                    [("mart.other", "success", 60, None, None)])
        now = utc_deadline(day) + timedelta(minutes=30)
        check(project, graph, store, now)
        log = IncidentLog(store, "test")
        incident = log.open_for("morning", day)
        assert incident is not None
        assert incident.status == IncidentStatus.OPEN
        new = {"other days": usecase_yml(on="[mon, wed, fri]"),
               "met by new assets": usecase_yml("other")}[change]
        (root / "usecases/morning.yml").write_text(new.replace("owner: data-team\n", owned))
        received.clear()
        check(*loaded(root), store, now + timedelta(minutes=5))
        closed = log.require(incident.id)
        assert (closed.status, closed.resolution) == (IncidentStatus.RESOLVED, IncidentResolution.REDEFINED)
        assert [e.kind for e in log.events(incident.id)][-1] == "redefined"
        assert "not a recovery" in (closed.note or "")
        about = [m["subject"] for m in received if f"morning {day}" in m.get("subject", "")]
        assert about == [f"[kiban] incident #{incident.id} morning {day}: withdrawn, service level changed"]
    finally:
        store.close()


def test_two_projects_in_one_store_never_close_each_others_incidents(root, tmp_path):
    other_root = tmp_path / "other"
    shutil.copytree(root, other_root)
    state = f"sqlite:///{(root / '.kiban' / 'state.db').as_posix()}"
    (root / "kiban.yml").write_text((root / "kiban.yml").read_text() + f"state: {state}\n")
    (other_root / "kiban.yml").write_text((other_root / "kiban.yml").read_text().replace("name: test", "name: other")
                                          + f"state: {state}\n")
    mine, theirs = loaded(root), loaded(other_root)
    assert mine[0].state_url == theirs[0].state_url
    store = Store(mine[0].state_url)
    try:
        day = date(2026, 11, 10)
        for name in ("test", "other"):
            add_run(store, name, f"first-{name}", FIRST, [("warehouse.orders", "success", 5, None, None)])
            nightly_of(store, name, day, fail=True)
        now = utc_deadline(day) + timedelta(minutes=30)
        check(*mine, store, now, notify=False)
        check(*theirs, store, now, notify=False)
        before = open_incidents(store, "other")
        assert ("morning", day) in before
        assert ("morning", day) in open_incidents(store, "test")
        for name in ("morning", "noon", "other"):  # this project drops every use case the other one has
            (root / "usecases" / f"{name}.yml").unlink()
        (root / "usecases/renamed.yml").write_text(usecase_yml())
        after = loaded(root)
        result = check(*after, store, now + timedelta(minutes=5), notify=False)
        assert open_incidents(store, "test") == breaches(result, after[0])
        assert not {u for u, _ in open_incidents(store, "test")} & {"morning", "noon", "other"}
        assert open_incidents(store, "other") == before
        assert all(i.resolution is None for i in IncidentLog(store, "other").recent(include_resolved=True))
        check(*theirs, store, now + timedelta(minutes=10), notify=False)  # and the other way round
        assert open_incidents(store, "other") == before
        assert {i.resolution for i in IncidentLog(store, "test").recent(include_resolved=True)
                if i.usecase != "renamed"} == {IncidentResolution.RETIRED}
    finally:
        store.close()


def test_a_later_deadline_that_a_failure_still_endangers_keeps_the_incident_on_the_new_promise(root):
    store = Store(loaded(root)[0].state_url)
    try:
        day, now, log, incident = failed_morning(root, store)
        assert incident.impact["promise"]["by"] == "08:30"
        (root / "usecases/morning.yml").write_text(usecase_yml(by="23:00"))
        result = check(*loaded(root), store, now + timedelta(minutes=5), notify=False)
        assert next(v for v in result.verdicts if v.usecase == "morning" and v.due_date == day).verdict == "at_risk"
        kept = log.require(incident.id)
        assert kept.status == IncidentStatus.OPEN
        assert kept.impact["promise"]["by"] == "23:00"
    finally:
        store.close()


def test_the_command_line_shows_a_withdrawn_incident_as_closed_and_says_why(root, cli):
    """`kiban incidents` (open ones) no longer lists it; `--all` lists it resolved, with its resolution."""
    store = Store(loaded(root)[0].state_url)
    try:
        day, now, _log, incident = failed_morning(root, store)
        (root / "usecases/morning.yml").unlink()
        check(*loaded(root), store, now + timedelta(minutes=5), notify=False)
    finally:
        store.close()
    open_now = cli("--project", root, "incidents", "--json")
    assert open_now.returncode == 0, open_now.stderr
    assert incident.id not in [i["id"] for i in json.loads(open_now.stdout)["incidents"]]
    every = cli("--project", root, "incidents", "--all", "--json")
    assert every.returncode == 0, every.stderr
    [shown] = [i for i in json.loads(every.stdout)["incidents"] if i["id"] == incident.id]
    assert (shown["status"], shown["resolution"], shown["due_date"]) == ("resolved", "retired", str(day))
