"""A notebook's reads run on one resident bounded worker whose results come back in a sealed memfd the parent maps:
a result a notebook holds is never overwritten by a later read that reuses the memory, the worker still cannot
write a byte to any file (nor grow the result file), a read past its time fails alone, concurrent reads each get
their own, masked result."""

from __future__ import annotations

import errno
import gc
import mmap
import multiprocessing
import os
import sys
import threading

import pytest

from kiban.catalog import sandbox
from kiban.catalog.reading import Reader
from kiban.catalog.sandbox import QueryStopped
from kiban.catalog.usage import Actor
from kiban.store import Store
from tests.helpers.sandbox import people_project

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not sandbox.resident_available(),
                                reason="memfd and the OS limits are Linux's")
ANN = Actor("ann")


@pytest.fixture
def reader(make_project):
    project = people_project(make_project)
    reader = Reader(project, Store(project.state_url))
    yield reader
    reader.close()


def test_a_held_result_survives_later_reads_that_reuse_the_memory(reader):
    held = reader.arrow("select id, email from lake.people where id <= 1000 order by id", ANN).table
    copy = held.to_pylist()
    assert {r["email"] for r in copy} == {"•••"}  # masked in the worker
    for n in (3, 1500, 7):  # other results of other sizes, while `held` is still mapped
        other = reader.arrow(f"select id * 1000 as id, 'x' as email from lake.people where id <= {n}", ANN).table
        assert other.num_rows == n
        del other
        gc.collect()
    assert held.to_pylist() == copy
    (resident,) = reader._residents.values()
    assert resident._spare, "a result nobody maps any more gives its memory back for the next read"
    del held
    gc.collect()
    again = reader.arrow("select grp, n from mart.groups order by grp", ANN).table
    assert again.column("n").to_pylist() == [285, 286, 286, 286, 286, 286, 285]


def _try_to_write(fd: int, path: str, out: multiprocessing.connection.Connection) -> None:
    sandbox.confine(None, "same")
    tried = {}
    for name, attempt in (("write the memfd", lambda: os.write(fd, b"x")),
                          ("grow the memfd", lambda: os.ftruncate(fd, 2 * os.fstat(fd).st_size)),
                          ("shrink the memfd", lambda: os.ftruncate(fd, 0)),
                          ("write a file", lambda: os.write(os.open(path, os.O_WRONLY | os.O_CREAT), b"x"))):
        try:
            attempt()
            tried[name] = "done"
        except OSError as exc:
            tried[name] = errno.errorcode.get(exc.errno or 0, str(exc))
    mapping = mmap.mmap(fd, 4096, flags=mmap.MAP_SHARED)
    mapping[:5] = b"arrow"  # what the worker does: store into the parent's pages
    mapping.close()
    out.send(tried)


def test_the_worker_cannot_write_any_file_not_even_its_result_file(tmp_path):
    job = sandbox.Job(None, (), "", None, 0, 1, "1GB", 1, 2**30, False)  # type: ignore[arg-type]
    resident = sandbox.Resident(job, lambda found: ({}, None))
    fd, _ = resident._memfd()
    try:
        ours, theirs = multiprocessing.get_context("fork").Pipe()
        child = multiprocessing.get_context("fork").Process(target=_try_to_write,
                                                            args=(fd, str(tmp_path / "leak.txt"), theirs))
        child.start()
        tried = ours.recv()
        child.join(10)
        assert tried["write the memfd"] == "EFBIG"
        assert tried["write a file"] == "EFBIG"
        assert tried["grow the memfd"] in ("EFBIG", "EPERM")
        assert tried["shrink the memfd"] == "EPERM"  # sealed
        with pytest.raises(PermissionError):  # the seals hold even for an unconfined process
            os.ftruncate(fd, 2 * os.fstat(fd).st_size)
        assert (tmp_path / "leak.txt").stat().st_size == 0  # not a byte (RLIMIT_FSIZE 0, as for every query)
        assert os.pread(fd, 5, 0) == b"arrow"  # the only way out: the pages the parent handed over
    finally:
        os.close(fd)


def test_a_read_past_its_time_fails_alone_and_the_next_read_works(reader):
    assert reader.arrow("select count(*) as n from lake.people", ANN).table.column("n").to_pylist() == [2000]
    with pytest.raises(QueryStopped):
        reader.arrow("select count(*) from lake.people a, lake.people b, lake.people c where a.id + b.id = c.id",
                     ANN, timeout=1)
    assert reader.arrow("select count(*) as n from lake.people", ANN).table.column("n").to_pylist() == [2000]


def test_concurrent_reads_each_get_their_own_masked_result(reader):
    got: dict[int, list[object]] = {}
    errors: list[BaseException] = []

    def read(n: int) -> None:
        try:
            table = reader.arrow("select id, email from lake.people where id <= ? order by id", ANN, [n]).table
            got[n] = table.column("id").to_pylist() + table.column("email").to_pylist()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(n,)) for n in (10, 20, 30, 40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    for n, values in got.items():
        assert values == [*range(1, n + 1), *["•••"] * n]
