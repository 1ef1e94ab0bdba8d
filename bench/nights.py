#!/usr/bin/env python3
"""Simulated nights (tests/nights.py): is late data seen coming, the right cause named, the workaround right?

For each kind of night (normal, slow step, failure, late source, bad data upstream, too few threads, late start)
it runs ``--nights`` nights of that kind, each followed by a normal night, after a warm-up of normal nights,
and measures on every use-case day:

- misses warned ≥ 30 min before the deadline (consumers told; target ≥ 95 %),
- met days whose consumers were warned (false alarms; target ≤ 3 %),
- incidents whose root cause names the scripted kind and asset (target ≥ 97 %),
- misses repaired by the incident's workaround run as suggested (target ≥ 95 % of the repairable ones).

Writes the section "Simulated nights" of bench/RESULTS.md (use ``--kinds`` to run a subset; the section is
written from the JSON files of every kind run so far, so kinds can run in parallel processes).

    .venv/bin/python bench/nights.py [--nights 60] [--kinds slow,failed] [--step 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from results import write_section  # noqa: E402

from tests.nights import KINDS, simulate  # noqa: E402

OUT = HERE / "nights"
STEP = 5


def measure(kind: str, nights: int, step: int) -> dict[str, object]:
    """Simulate and score; the JSON of the kind is rewritten after every night of the kind (the nights
    finished so far), so a measurement cut short still reports honestly what it measured."""
    started = time.perf_counter()

    def save(outcomes: list[Any]) -> None:
        if outcomes and outcomes[-1].kind == kind:
            (OUT / f"{kind}.json").write_text(json.dumps(score(kind, outcomes, started, nights), indent=1))

    # the state store on tmpfs when there is one: its commits (synchronous=FULL) wait for the disk otherwise, and
    # on a loaded machine the fsyncs, not kiban, were most of a night's wall time
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None, prefix="kiban-nights-") as tmp:
        outcomes = simulate(Path(tmp), kind, nights, seed=sum(map(ord, kind)), step_minutes=step, progress=save)
    return score(kind, outcomes, started, nights)


def score(kind: str, outcomes: list[Any], started: float, asked: int) -> dict[str, object]:
    mine = [o for o in outcomes if o.kind == kind]
    nights = len({o.day for o in mine})
    misses = [o for o in mine if o.missed]
    met = [o for o in outcomes if not o.missed]  # the normal nights in between count for false alarms too
    incidents = [o for o in mine if o.truth is not None and (o.cause is not None or o.missed)]
    repairs = [o for o in mine if o.repaired is not None]
    return {"kind": kind, "nights": nights, "use_case_days": len(outcomes), "misses": len(misses),
            "warned_30": sum(o.warned_ahead for o in misses), "met": len(met),
            "false_alarms": sum(o.false_alarm for o in met), "incidents": len(incidents),
            "cause_right": sum(o.cause_right for o in incidents), "repairs": len(repairs),
            "repaired": sum(bool(o.repaired) for o in repairs),
            "wrong_causes": sorted({f"{(o.cause or {}).get('kind')} {(o.cause or {}).get('asset')}"
                                    for o in incidents if not o.cause_right})[:5],
            "asked": asked, "step": STEP, "seconds": round(time.perf_counter() - started, 1)}


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})" if whole else "-"


def section() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    rows.sort(key=lambda r: KINDS.index(r["kind"]))
    lines = ["## Simulated nights (bench/nights.py)", "",
             "Each kind: its nights alternate with normal nights after a 10-night warm-up; two use cases "
             "(08:30 store sales, 06:00 stock forecast, on one graph with 4 threads). The world (arrivals, "
             "durations, failures, bad rows) is scripted; kiban sees it through the state store, its run "
             "watcher's events and the scheduler's check every 5 simulated minutes (tests/nights.py). "
             "Repairs run the incident's workaround as suggested, at a random time after the incident opened.",
             "", "| kind | nights | misses warned ≥ 30 min | met days warned | root cause right | "
             "repaired by the workaround | wrong causes (sample) |", "|---|---|---|---|---|---|---|"]
    total = dict.fromkeys(("misses", "warned_30", "met", "false_alarms", "incidents", "cause_right", "repairs",
                           "repaired"), 0)
    for r in rows:
        for key in total:
            total[key] += r[key]
        lines.append(f"| {r['kind']} | {r['nights']} | {pct(r['warned_30'], r['misses'])} | "
                     f"{pct(r['false_alarms'], r['met'])} | {pct(r['cause_right'], r['incidents'])} | "
                     f"{pct(r['repaired'], r['repairs'])} | {'; '.join(r['wrong_causes']) or '-'} |")
    lines.append(f"| **all** | | {pct(total['warned_30'], total['misses'])} | "
                 f"{pct(total['false_alarms'], total['met'])} | {pct(total['cause_right'], total['incidents'])} | "
                 f"{pct(total['repaired'], total['repairs'])} | |")
    lines += ["", "Targets: ≥ 95 % of misses warned ≥ 30 min ahead; ≤ 3 % of met days warned; root cause right "
              "in ≥ 97 %; ≥ 95 % of repairable misses repaired by the suggested workaround."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=60)
    parser.add_argument("--kinds", default=",".join(k for k in KINDS if k != "normal"))
    parser.add_argument("--step", type=int, default=5, help="minutes between the scheduler's checks")
    args = parser.parse_args()
    global STEP
    STEP = args.step
    OUT.mkdir(exist_ok=True)
    for kind in args.kinds.split(","):
        result = measure(kind, args.nights, args.step)
        (OUT / f"{kind}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)
    write_section("## Simulated nights", section())
    print(section())


if __name__ == "__main__":
    main()
