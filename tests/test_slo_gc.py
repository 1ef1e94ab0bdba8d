"""The cyclic GC is process-wide: kiban touches it in one place (``slo.facts.quiet_gc``), safe for the console's
threads judging service levels at the same time (issue 25: no ``gc.freeze()`` in code web threads call)."""

from __future__ import annotations

import ast
import gc
import random
import threading
from pathlib import Path

import kiban
from kiban.slo.facts import quiet_gc

SRC = Path(kiban.__file__).parent


def test_the_gc_stays_off_until_the_last_thread_leaves() -> None:
    assert gc.isenabled()
    inside = threading.Barrier(8)
    seen_on: list[bool] = []
    order = random.Random(7).sample(range(8), 8)
    turn = threading.Condition()
    left: list[int] = []

    def judge(n: int) -> None:
        with quiet_gc():
            inside.wait(timeout=10)
            with turn:  # leave in a shuffled order: each one checks the GC is still off while others remain
                turn.wait_for(lambda: order[len(left)] == n, timeout=10)
                seen_on.append(gc.isenabled())
                left.append(n)
                turn.notify_all()

    threads = [threading.Thread(target=judge, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert seen_on == [False] * 8
    assert gc.isenabled()


def test_a_gc_turned_off_by_the_program_stays_off() -> None:
    gc.disable()
    try:
        with quiet_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_no_other_module_touches_the_gc() -> None:
    touching = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "gc":
                touching.append(f"{path.relative_to(SRC)}:{node.lineno} gc.{node.attr}")
    assert [t for t in touching if not t.startswith("slo/facts.py:")] == []
    assert not any("freeze" in t for t in touching)
