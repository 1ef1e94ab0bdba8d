"""Time in tests, on a machine others share (CI runs the suite in two processes on two loaded cores).

Two kinds of time, two tools:

- an *incidental* wait (a worker starting, a lease running out, a thread's last bytes) waits on the condition
  itself with a generous deadline: ``wait_for``. The deadline only decides how long a broken build takes to fail;
  it never decides a verdict on a healthy one.
- a *promise* about speed ("the lineage page paints in 1 s", "10,000 rows land in 2 s") stays measured, against
  its limit scaled by how slow the machine is at the moment of measuring: ``slowdown`` times a fixed pure-Python
  workload whose time on an idle core is known, before and after the measured action. ``within`` retries an
  action whose time is over the scaled limit, forgiving scheduling only: every attempt's result is still the
  caller's to check, and an action that is slow on an idle machine fails every attempt.

The figure a promise names is owned by a bench (bench/RESULTS.md); the tests keep the promise from rotting.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# CPU seconds of ``_spin()`` on one idle core of the CI/dev machine (2026-12: 7.9-8.1 ms, process_time). A slower
# machine (or a busier one) takes longer and gets a larger slowdown: both make a wall-clock promise harder to keep.
REFERENCE_S = 0.008
SPIN = 200_000


def _spin() -> int:
    x = 0
    for i in range(SPIN):
        x += i * i
    return x


def slowdown(samples: int = 5) -> float:
    """How many times slower than an idle core this process runs right now (never below 1): the median wall time
    of ``samples`` runs of a fixed workload over its idle time."""
    took = []
    for _ in range(samples):
        began = time.perf_counter()
        _spin()
        took.append(time.perf_counter() - began)
    return max(1.0, statistics.median(took) / REFERENCE_S)


@dataclass(frozen=True)
class Timed:
    """One measured attempt: wall seconds, and the machine's slowdown around it (the larger of before and after)."""

    seconds: float
    slowdown: float

    def within(self, limit: float) -> bool:
        return self.seconds <= limit * self.slowdown

    def describe(self, limit: float) -> str:
        return (f"{self.seconds:.3f} s against {limit:.3f} s x slowdown {self.slowdown:.2f} "
                f"= {limit * self.slowdown:.3f} s")


def timed(action: Callable[[], T], measure: Callable[[T], float] | None = None) -> tuple[T, Timed]:
    """Run ``action`` once: its result and its time (wall seconds, or ``measure(result)`` when the action reports its
    own figure, e.g. a browser's first paint), with the slowdown measured before and after it."""
    before = slowdown()
    began = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - began
    after = slowdown()
    return result, Timed(measure(result) if measure else seconds, max(before, after))


def within(limit: float, action: Callable[[], T], *, attempts: int = 3,
           measure: Callable[[T], float] | None = None, what: str = "the action") -> T:
    """The result of ``action``, which must keep ``limit`` seconds scaled by the machine's slowdown in one of
    ``attempts`` tries. Only for actions that can be repeated without changing what they prove; the caller checks
    the (last) result as it would without the timing."""
    tries: list[Timed] = []
    for _ in range(attempts):
        result, took = timed(action, measure)
        tries.append(took)
        if took.within(limit):
            return result
    raise AssertionError(f"{what} missed its time in {attempts} tries: " + "; ".join(t.describe(limit) for t in tries))


def wait_for(condition: Callable[[], T], timeout: float = 60.0, interval: float = 0.05,
             what: str = "the condition") -> T:
    """Poll ``condition()`` until it is truthy and return its value; fail after ``timeout`` seconds. For incidental
    waits: the timeout is generous on purpose, and only a broken build ever reaches it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(interval)
