"""A run's attempts are committed in groups (kiban.run.attempt_log): every row arrives, in order, soon."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kiban.run.attempt_log import AttemptLog
from kiban.store import Store
from kiban.store.asset_locks import AssetLocks


def _row(asset: str, status: str = "success") -> dict[str, Any]:
    return dict(run_id="r1", asset=asset, status=status, attempt=1, started_at=None, ended_at=None, rows=1,
                bytes=None, fingerprint="f", error=None, watermark=None)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.start_run("r1", "p", [], {})
    yield s
    s.close()


def test_rows_from_many_threads_all_arrive_in_few_commits(store, monkeypatch):
    commits = []
    real = store.record_attempts
    monkeypatch.setattr(store, "record_attempts", lambda rows: (commits.append(len(rows)), real(rows)))
    log = AttemptLog(store, every=0.05)
    threads = [threading.Thread(target=lambda i=i: [log.add(_row(f"w.a{i}_{j}")) for j in range(50)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert sorted(a.asset for a in store.attempts("r1")) == sorted(f"w.a{i}_{j}" for i in range(4) for j in range(50))
    assert sum(commits) == 200
    assert len(commits) < 200


def test_an_attempt_is_committed_soon_without_waiting_for_the_run(store):
    log = AttemptLog(store, every=0.05)
    log.add(_row("w.a", "retrying"))
    log.add(_row("w.a", "success"))
    deadline = time.monotonic() + 60  # "soon" is the 0.05 s flush; the deadline only ends a failure
    while len(store.attempts("r1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [a.status for a in store.attempts("r1")] == ["retrying", "success"]  # in order
    log.close()
    with pytest.raises(RuntimeError):
        log.add(_row("w.b"))


def test_a_failing_store_keeps_the_rows_and_close_says_so(store, monkeypatch):
    log = AttemptLog(store, every=10)
    real = store.record_attempts
    monkeypatch.setattr(store, "record_attempts", lambda rows: (_ for _ in ()).throw(OSError("disk full")))
    log.add(_row("w.a"))
    with pytest.raises(OSError):
        log.close()
    monkeypatch.setattr(store, "record_attempts", real)
    log.flush()  # the row was kept for a retry
    assert [a.asset for a in store.attempts("r1")] == ["w.a"]


def test_freed_locks_go_back_with_the_attempts_in_one_commit(store, monkeypatch):
    """A finished asset's lock is handed back in the commit that records its attempt (no commit of its own)."""
    locks = AssetLocks(store, "p")
    locks.acquire("r1", ["warehouse.a", "warehouse.b"])
    assert set(locks.held()) == {"warehouse.a", "warehouse.b"}
    commits = []
    real = store.record_attempts
    monkeypatch.setattr(store, "record_attempts",
                        lambda rows, release=None: (commits.append((len(rows), release)), real(rows, release)))
    log = AttemptLog(store, every=60, run_id="r1")  # nothing flushes on its own in this test
    log.add(_row("warehouse.a"))
    log.free(locks.names(["warehouse.a"]))
    assert set(locks.held()) == {"warehouse.a", "warehouse.b"}  # not yet committed
    log.close()
    assert set(locks.held()) == {"warehouse.b"}
    assert len(commits) == 1
    assert commits[0][0] == 1
    assert list(commits[0][1].names) == ["asset:p:warehouse.a"]
    assert [a.asset for a in store.attempts("r1")] == ["warehouse.a"]
