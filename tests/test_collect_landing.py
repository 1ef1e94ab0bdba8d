"""Landing files are taken only when complete and never twice (issue 16): a writer appends to files in chunks —
cutting lines in half between chunks — while loads run; every row lands exactly once, nothing is quarantined.
A ready marker and the .part rename convention hold files back; a changed file follows `on_change:`."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban.collect.connector import SourceError
from kiban.collect.load import load_table
from kiban.collect.manifest import Manifests
from kiban.project import load_project
from kiban.store import Store

ASSET = "lake.land_events"


def project(make_project: Any, extra: str = "") -> Path:
    return make_project({"sources/land.yml": "type: files\ntables:\n  events:\n    path: landing/*.csv\n"
                                             + extra})


def lake_ids(root: Path) -> list[int]:
    proj = load_project(root)
    state = Manifests(Store(proj.state_url)).state(proj.name, ASSET)
    if state is None or not state.files:
        return []
    files = "[" + ", ".join(f"'{proj.lake_dir / f}'" for f in state.files) + "]"
    return [r[0] for r in duckdb.connect().execute(
        f"select id::int from read_parquet({files}, union_by_name = true, hive_partitioning = false) "
        "order by 1").fetchall()]


def collect(root: Path) -> Any:
    proj = load_project(root)
    return load_table(proj, "land", "events", Store(proj.state_url))


def write_in_chunks(folder: Path, files: int, rows: int, seed: int, stop_pause: float) -> None:
    """Each file: a header, then ``rows`` lines written in 4–6 chunks cut at random bytes (mid-line), with
    pauses shorter than ``stop_pause`` between chunks."""
    rnd = random.Random(seed)
    next_id = 0
    for n in range(files):
        text = "id,payload\n" + "".join(f"{next_id + i},row-{next_id + i}-{'x' * rnd.randint(0, 40)}\n"
                                         for i in range(rows))
        next_id += rows
        cuts = sorted(rnd.sample(range(1, len(text)), rnd.randint(3, 5)))
        with (folder / f"events_{n:03d}.csv").open("w") as handle:
            start = 0
            for cut in [*cuts, len(text)]:
                handle.write(text[start:cut])
                handle.flush()
                start = cut
                time.sleep(rnd.uniform(0.05, stop_pause))


def test_a_writer_appending_in_chunks_lands_each_row_once(make_project: Any) -> None:
    root = project(make_project)
    folder = root / "landing"
    folder.mkdir()
    files, rows = 8, 300
    writer = threading.Thread(target=write_in_chunks, args=(folder, files, rows, 7, 0.6))
    writer.start()
    loads = quarantined = 0
    while writer.is_alive():
        try:
            result = collect(root)
        except SourceError as exc:  # before the writer's first file: nothing to take yet
            assert "matches no file" in str(exc)
            continue
        loads += 1
        quarantined += result.record.rows_quarantined
    writer.join()
    collect(root)
    ids = lake_ids(root)
    assert quarantined == 0, "a cut-off last line means a file was taken before it was complete"
    assert ids == list(range(files * rows)), f"{len(ids) - len(set(ids))} duplicated, " \
                                             f"{files * rows - len(set(ids))} missing after {loads} loads"
    assert loads >= 3


def test_a_file_changed_while_read_fails_the_load_and_lands_later(make_project: Any, monkeypatch: Any) -> None:
    from kiban.collect.connectors import textfile

    root = project(make_project, "    settle: 0\n")
    (root / "landing").mkdir()
    target = root / "landing/a.csv"
    target.write_text("id,payload\n1,a\n")
    real = textfile.identify

    def identify_then_append(ctx: Any, path: Path) -> Any:
        found = real(ctx, path)
        with path.open("a") as handle:  # the writer goes on right after the file was identified
            handle.write("2,b\n")
        return found

    monkeypatch.setattr(textfile, "identify", identify_then_append)
    result = collect(root)  # skipped: it changed while identified
    assert any("changed while it was identified" in n for n in result.notes)
    monkeypatch.setattr(textfile, "identify", real)
    collect(root)
    assert lake_ids(root) == [1, 2]


def test_ready_marker_and_part_names_hold_files_back(make_project: Any) -> None:
    root = project(make_project, "    ready_marker: .done\n    settle: 0\n")
    (root / "landing").mkdir()
    (root / "landing/a.csv").write_text("id,payload\n1,a\n")
    (root / "landing/b.csv.part").write_text("id,payload\n2,b\n")
    result = collect(root)
    assert result.record.rows_read == 0
    assert any("without their .done marker" in n for n in result.notes)
    (root / "landing/a.csv.done").write_text("")
    os.replace(root / "landing/b.csv.part", root / "landing/b.csv")
    (root / "landing/b.csv.done").write_text("")
    collect(root)
    collect(root)
    assert lake_ids(root) == [1, 2]


def test_a_changed_file_is_refused_with_a_note_or_appended(make_project: Any) -> None:
    root = project(make_project, "    on_change: refuse\n    settle: 0\n")
    (root / "landing").mkdir()
    (root / "landing/a.csv").write_text("id,payload\n1,a\n")
    collect(root)
    (root / "landing/a.csv").write_text("id,payload\n1,a\n2,b\n")
    result = collect(root)
    assert result.record.rows_read == 0
    assert any("on_change: refuse" in n for n in result.notes)
    assert lake_ids(root) == [1]


def test_a_path_matching_nothing_is_an_error_naming_it(make_project: Any) -> None:
    root = make_project({"sources/land.yml": "type: files\ntables:\n  events:\n    path: landing/*.csv\n"})
    (root / "landing").mkdir()
    with pytest.raises(SourceError, match=r"path landing/\*.csv matches no file"):
        collect(root)


def test_empty_and_broken_files_are_not_success(make_project: Any) -> None:
    """A header-only file gives the table its columns; a load whose every row is refused fails; a header that
    changes between the files of one load is noted."""
    columns = "    columns:\n      - {name: n, type: INTEGER}\n    settle: 0\n"
    root = project(make_project, columns)
    (root / "landing").mkdir()
    (root / "landing/a.csv").write_text("id,n\n")
    result = collect(root)
    assert result.record.status == "committed"
    assert [c for c, _ in result.record.schema] == ["id", "n"]
    assert len([f for f in result.record.files if f[1] == "data"]) == 1  # the view exists, with its columns
    (root / "landing/b.csv").write_text("id,n\n1,x\n2,y\n")
    from kiban.collect.load import LoadFailed

    with pytest.raises(LoadFailed, match="all 2 rows were quarantined"):
        collect(root)
    (root / "landing/b.csv").unlink()
    (root / "landing/c.csv").write_text("id,n\n3,3\n")
    (root / "landing/d.csv").write_text("id,n,extra\n4,4,e\n")
    result = collect(root)
    assert any("d.csv: its header differs from landing/c.csv's (new extra)" in n for n in result.notes)
    assert lake_ids(root) == [3, 4]


def test_merged_cells_and_formulas_without_a_saved_value_are_noted(make_project: Any) -> None:
    from openpyxl import Workbook

    root = make_project({"sources/book.yml": "type: xlsx\ntables:\n  s:\n    path: sheets/*.xlsx\n    settle: 0\n"})
    (root / "sheets").mkdir()
    book = Workbook()
    sheet = book.active
    sheet.title = "shifts"
    sheet.append(["store", "staff", "hours"])
    sheet.append(["Tokyo", "Aiko", 8])
    sheet.append([None, "Ren", "=C2+1"])  # openpyxl saves the formula, never a value
    sheet.merge_cells("A2:A3")
    book.save(root / "sheets/a.xlsx")
    proj = load_project(root)
    result = load_table(proj, "book", "s", Store(proj.state_url))
    notes = " ".join(result.notes)
    assert "1 merged cell range(s) on shifts (A2:A3)" in notes
    assert "1 formula cell(s) on shifts without a saved value (C3)" in notes


def test_a_workbook_whose_header_differs_from_the_first_of_the_load_is_noted(make_project: Any) -> None:
    from openpyxl import Workbook

    root = make_project({"sources/book.yml": "type: xlsx\nsettle: 0s\ntables:\n  s:\n    path: sheets/*.xlsx\n"})
    (root / "sheets").mkdir()
    for name, header in (("a", ["store", "staff"]), ("b", ["store", "person"])):
        book = Workbook()
        book.active.append(header)
        book.active.append(["Tokyo", "Aiko"])
        book.save(root / f"sheets/{name}.xlsx")
    proj = load_project(root)
    result = load_table(proj, "book", "s", Store(proj.state_url))
    assert any("sheets/b.xlsx: its header differs from sheets/a.xlsx's (new person; without staff)" in n
               for n in result.notes), result.notes


COLLECT = """
import sys
from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store
project = load_project(sys.argv[1])
r = load_table(project, "land", "events", Store(project.state_url)).record
print(r.rows_read, r.rows_quarantined)
"""


def _collect_child(root: Path) -> Any:
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", COLLECT, str(root)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def chunked_writer_and_killed_loads(make_project: Any, kills: int, files: int, seed: int) -> dict[str, int]:
    """A writer appends to landing files in chunks (lines cut in half between chunks) while loads run in child
    processes — each SIGKILLed at a random moment of a load's usual duration, then one left to commit: every row
    lands exactly once and nothing is quarantined."""
    import signal
    import subprocess

    root = project(make_project)
    folder = root / "landing"
    folder.mkdir()
    (folder / "events_first.csv").write_text("id,payload\n-1,calibration\n")
    began = time.monotonic()
    out, err = (first := _collect_child(root)).communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    took = time.monotonic() - began
    rows = 300
    writer = threading.Thread(target=write_in_chunks, args=(folder, files, rows, seed, 0.5))
    writer.start()
    rnd = random.Random(seed)
    killed = finished = quarantined = 0
    while writer.is_alive() or killed < kills:
        child = _collect_child(root)
        try:
            child.wait(rnd.uniform(0.0, took * 1.2))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed += 1
        else:
            quarantined += int(child.communicate()[0].split()[1])
            finished += 1
        done = _collect_child(root)  # and one that commits while the writer goes on
        out, err = done.communicate(timeout=300)
        assert done.returncode == 0, err[-2000:]
        quarantined += int(out.split()[1])
        finished += 1
    writer.join()
    done = _collect_child(root)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err[-2000:]
    quarantined += int(out.split()[1])
    ids = [i for i in lake_ids(root) if i >= 0]
    assert quarantined == 0, "a cut-off last line means a file was taken before it was complete"
    assert ids == list(range(files * rows)), f"{len(ids) - len(set(ids))} duplicated, " \
                                             f"{files * rows - len(set(ids))} missing"
    return {"killed": killed, "finished": finished, "rows": len(ids)}


def test_loads_killed_while_a_writer_appends_in_chunks_land_each_row_once(make_project: Any) -> None:
    counts = chunked_writer_and_killed_loads(make_project, kills=3, files=4, seed=11)
    assert counts["killed"] >= 3
    assert counts["finished"] >= 3


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_hundred_loads_killed_while_a_writer_appends_in_chunks(make_project: Any) -> None:
    kills = int(os.environ.get("KIBAN_SOAK_TRIALS", "100"))
    counts = chunked_writer_and_killed_loads(make_project, kills=kills, files=max(8, kills // 2), seed=1616)
    print(f"landing race: {counts}")
