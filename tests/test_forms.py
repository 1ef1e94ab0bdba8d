"""Forms and uploads: validation, durable entries, loads of a lake source, who entered each row, exactly once."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from kiban.collect.manifest import Manifests
from kiban.errors import ProjectError, UsageError
from kiban.forms.land import land, new_submission
from kiban.forms.spec import load_forms
from kiban.forms.validate import check_row, check_rows, read_upload
from kiban.project import load_project
from kiban.store import Store
from tests.helpers.forms import WASTE_FILES
from tests.helpers.timing import timed


@pytest.fixture
def waste(make_project):
    root = make_project(WASTE_FILES)
    project = load_project(root)
    return project, load_forms(project)["waste"], Store(project.state_url)


def lake_rows(project, sql):
    files = sorted(str(p) for p in (project.lake_dir / "forms" / "waste").rglob("*.parquet"))
    if not files:
        return []
    return duckdb.connect().execute(sql.replace("T", f"read_parquet({files!r})")).fetchall()


def test_a_row_is_converted_and_checked_field_by_field(waste):
    _, form, _ = waste
    typed, reasons = check_row(form, {"store_id": "12", "day": "2026/12/07", "item": "bread", "quantity": "1,200"})
    assert reasons == {}
    assert typed["store_id"] == 12
    assert typed["quantity"] == 1200
    assert str(typed["day"]) == "2026-12-07"
    _, reasons = check_row(form, {"store_id": "0", "day": "yesterday", "item": "cake", "quantity": "-1",
                                  "note": "x" * 21})
    assert reasons == {"store_id": "must be at least 1", "day": "is not a date (YYYY-MM-DD)",
                       "item": "must be one of bread, milk, vegetables, other", "quantity": "must be at least 0",
                       "note": "is longer than 20 characters"}
    assert check_row(form, {})[1]["store_id"] == "is required"


def test_who_may_enter(waste):
    _, form, _ = waste
    assert form.may_enter("tanaka", "viewer")
    assert form.may_enter("x", "analyst")
    assert form.may_enter("x", "admin")
    assert not form.may_enter("x", "viewer")


def test_an_entry_lands_as_a_load_with_who_entered_it_and_a_resend_lands_nothing(waste):
    project, form, store = waste
    rows = [{"store_id": 3, "day": check_row(form, {"day": "2026-12-07"})[0]["day"], "item": "milk",
             "quantity": 4, "note": None}]
    submission = new_submission()
    first = land(project, store, form, rows, "tanaka", submission)
    assert first.loaded
    assert not first.duplicate
    assert first.rows == 1
    again = land(project, store, form, rows, "tanaka", submission)  # a double tap, a retry after a lost answer
    assert again.duplicate
    assert lake_rows(project, "select store_id, item, quantity, _entered_by, _submission from T") == \
        [(3, "milk", 4, "tanaka", submission)]
    loads = Manifests(store).state(project.name, "lake.forms_waste")
    assert loads is not None


def test_an_upload_shows_refused_rows_and_lands_10k_valid_rows_within_2_seconds(waste):
    project, form, store = waste
    lines = ["Store,day,item,quantity,note"]
    lines += [f"{1 + i % 50},2026-12-{1 + i % 28:02d},bread,{i % 100}," for i in range(10_000)]
    lines += ["0,2026-12-01,bread,1,", "5,2026-13-01,cake,1,", "=cmd|' /C calc'!A0,2026-12-01,milk,1,"]
    data = ("\ufeff" + "\r\n".join(lines)).encode("utf-8")

    def upload() -> tuple[Any, Any]:
        checked = check_rows(form, read_upload(form, "waste.csv", data))
        return checked, land(project, store, form, checked.valid, "ana", new_submission(), numbers=checked.rows)

    # 2 s on an idle machine, scaled by the machine's slowdown measured around the upload (it lands rows: no retry)
    (checked, landed), took = timed(upload)
    assert landed.loaded
    assert landed.rows == 10_000
    assert took.within(2.0), f"10,000 rows took {took.describe(2.0)} to land"
    assert [(r.row, sorted(r.reasons)) for r in checked.refused] == [
        (10_001, ["store_id"]), (10_002, ["day", "item"]), (10_003, ["store_id"])]
    assert lake_rows(project, "select count(*), count(distinct _row), min(_entered_by) from T") == [(10_000, 10_000,
                                                                                                    "ana")]


def test_xlsx_and_cp932_uploads_and_unknown_columns(waste):
    from io import BytesIO

    from openpyxl import Workbook

    _, form, _ = waste
    book = Workbook()
    sheet = book.active
    sheet.append(["store_id", "Day", "item", "quantity", None])
    sheet.append([7, "2026-12-07", "other", 3])
    buffer = BytesIO()
    book.save(buffer)
    rows = read_upload(form, "w.xlsx", buffer.getvalue())
    assert check_rows(form, rows).valid[0]["store_id"] == 7
    cp932 = "store_id,day,item,quantity,note\n1,2026-12-07,bread,2,賞味期限切れ\n".encode("cp932")
    assert check_rows(form, read_upload(form, "w.csv", cp932)).valid[0]["note"] == "賞味期限切れ"
    with pytest.raises(UsageError, match="'colour' is not a field"):
        read_upload(form, "w.csv", b"store_id,colour\n1,red\n")


def test_a_form_must_land_in_a_folder_of_parquet_files(make_project):
    root = make_project({**WASTE_FILES, "forms/bad.yml": "lands_in: forms.nope\nfields: [{name: a}]\n"})
    with pytest.raises(ProjectError, match=r"bad.yml:1:\d+: lands_in: no source table forms.nope"):
        load_forms(load_project(root))


LANDER = """
import sys
from kiban.forms.land import land
from kiban.forms.spec import load_forms
from kiban.project import load_project
from kiban.store import Store
project = load_project(sys.argv[1])
form = load_forms(project)["waste"]
store = Store(project.state_url)
for line in sys.stdin:
    submission, quantity = line.split()
    land(project, store, form, [{"store_id": 1, "day": None, "item": "other", "quantity": int(quantity)}],
         "lander", submission)
    print(submission, flush=True)  # the answer a client would get
"""


@pytest.mark.slow
def test_sigkill_while_entries_land_never_loses_or_doubles_one(waste):
    """A process lands entries one by one and says which it landed; it is killed with SIGKILL at random moments
    (mid-write, mid-load, mid-commit) and started again with every entry it had not acknowledged. Each entry is
    in the lake exactly once at the end."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    project, form, store = waste
    wanted = {f"entry-{i:05d}": i for i in range(40)}
    acknowledged: set[str] = set()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    rng = random.Random(22)
    kills = 0
    while len(acknowledged) < len(wanted):
        pending = [s for s in wanted if s not in acknowledged]
        process = subprocess.Popen([sys.executable, "-c", LANDER, str(project.root)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, env=env, text=True)
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write("".join(f"{s} {wanted[s]}\n" for s in pending))
        process.stdin.close()
        target = rng.randint(2, 10) if kills < 3 else None
        killer = None
        for count, line in enumerate(process.stdout, start=1):
            acknowledged.add(line.strip())
            if target is not None and count == target:  # a moment later: somewhere inside the next entry
                killer = threading.Timer(rng.uniform(0.0, 0.3), process.send_signal, [signal.SIGKILL])
                killer.start()
                kills += 1
                target = None
        process.wait()
        if killer is not None:
            killer.cancel()
    # whatever a kill left landed-but-unloaded, the next load takes
    from kiban.forms.land import load_pending

    load_pending(project, store, form)
    assert kills == 3
    found = lake_rows(project, "select _submission, count(*) from T group by 1")
    assert dict(found) == dict.fromkeys(wanted, 1)
