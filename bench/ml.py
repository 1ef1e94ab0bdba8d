#!/usr/bin/env python3
"""Machine learning as assets: what kiban's machinery costs next to the raw engine and the reference library.

Three measurements, each side by side in one process (medians of --reps):

1. **Python asset publish** — a Python asset that returns its input (N rows) built by ``kiban run``'s
   engine path (read inputs as Arrow, run the function, publish in one transaction with the fingerprint
   comment), against the raw engine doing the same work by hand (read to Arrow, ``create table as`` from it),
   and against the equivalent SQL model (no Arrow round trip at all).
2. **Drift statistics** — kiban's PSI + KS (from the 101 stored training quantiles) on N values, against
   ``scipy.stats.ks_2samp`` on the full training sample; also how close kiban's KS is to the exact one.
3. **Training data fingerprint** — kiban's hash of a training input (its values, whatever their memory layout:
   chunks combined, the bytes under nulls left out) against sha256 of the table's raw Arrow IPC bytes, which
   changes when the same rows are read in other batches or with other garbage under their nulls.
4. **Registry** — registering a version (artefact written with fsync, sha256, the gate, the store row) and
   loading it back under the trust rule (hash then unpickle), against a bare ``joblib.dump`` / ``joblib.load``.

    .venv/bin/python bench/ml.py                    # 2M rows, 3 repetitions
    .venv/bin/python bench/ml.py --rows 200000 --reps 1 --no-write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
from results import write_section  # bench/ is on sys.path when a script in it runs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

MARKER = "## Machine learning as assets"
PASSTHROUGH = '''
import kiban
import pyarrow as pa


@kiban.asset
def copied(lake_events: pa.Table) -> pa.Table:
    return lake_events
'''


def median_time(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def publish(rows: int, reps: int, work: Path) -> list[tuple[str, float]]:
    from kiban.engines.duckdb import DuckDBEngine
    from kiban.graph import build_graph
    from kiban.project import load_project

    root = work / "proj"
    (root / "models/warehouse").mkdir(parents=True)
    (root / "lake/events").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: bench\ntimezone: UTC\n")
    (root / "models/warehouse/copied.py").write_text(PASSTHROUGH)
    (root / "models/warehouse/copied_sql.sql").write_text("select * from lake.events")
    duckdb.connect().execute(f"copy (select i as id, i % 97 as store_id, random() * 100 as amount, "
                             f"'item_' || (i % 5000) as sku from range({rows}) t(i)) to "
                             f"'{root}/lake/events/part-0.parquet' (format parquet)")
    project = load_project(root)
    graph = build_graph(project)
    engine = DuckDBEngine(str(root / "kiban.duckdb"))
    engine.prepare([a for a in project.assets.values() if a.layer == "lake"])
    python_asset, sql_asset = graph.assets["warehouse.copied"], graph.assets["warehouse.copied_sql"]
    session = engine.session()
    cur = session.cursor

    def raw() -> None:
        table = cur.execute("select * from lake.events").to_arrow_table()
        cur.register("arrow_in", table)
        cur.execute("create or replace table main.raw_copy as select * from arrow_in")
        cur.unregister("arrow_in")

    engine.build(session, python_asset, "warm", "w")  # imports the module once, as a run would
    out = [
        ("raw engine: read to Arrow, create table from it", median_time(raw, reps)),
        ("kiban Python asset (engine.build)", median_time(lambda: engine.build(session, python_asset, "f", "b"), reps)),
        ("kiban SQL model, same result (engine.build)", median_time(lambda: engine.build(session, sql_asset, "f", "b"),
                                                                     reps)),
    ]
    engine.close()
    return out


def drift_stats(rows: int, reps: int) -> tuple[list[tuple[str, float]], float, float]:
    from scipy.stats import ks_2samp

    from kiban.ml.drift import baseline, ks, psi

    rng = np.random.default_rng(0)
    training, current = rng.gamma(2.0, 3.0, rows), rng.gamma(2.2, 3.0, rows)
    base = baseline({"x": training})["x"]
    exact = float(ks_2samp(training, current).statistic)
    out = [
        ("kiban: keep the training distribution (once per training)", median_time(lambda: baseline({"x": training}),
                                                                                  reps)),
        ("kiban: PSI + KS against the stored quantiles", median_time(lambda: (psi(base, current), ks(base, current)),
                                                                     reps)),
        ("scipy.stats.ks_2samp on the full training sample", median_time(lambda: ks_2samp(training, current), reps)),
    ]
    return out, ks(base, current), exact


def fingerprint(rows: int, reps: int) -> list[tuple[str, float]]:
    import hashlib

    import pyarrow as pa

    from kiban.ml.training import data_fingerprint

    # like warehouse.daily_demand: ids, a date, counts, lags with nulls at the start of every series
    table = duckdb.connect().execute(
        f"select i % 50 as store_id, i % 2000 as product_id, date '2026-01-01' + (i % 56)::int as day, "
        f"(i * 37 % 11) % 4 as qty, case when i % 56 >= 7 then (i * 13 % 7) end as lag_7, "
        f"case when i % 56 >= 28 then (i % 17) / 4.0 end as mean_28 from range({rows}) t(i)").to_arrow_table()

    def raw() -> str:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return hashlib.sha256(sink.getvalue()).hexdigest()

    return [("sha256 of the raw Arrow IPC bytes (layout-dependent)", median_time(raw, reps)),
            ("kiban data_fingerprint (values only)", median_time(lambda: data_fingerprint([table]), reps))]


def registry(reps: int, work: Path) -> list[tuple[str, float]]:
    import joblib
    from sklearn.ensemble import RandomForestRegressor

    from kiban.ml.registry import NewVersion, open_registry

    root = work / "reg"
    root.mkdir()
    (root / "kiban.yml").write_text("name: bench\ntimezone: UTC\n")
    rng = np.random.default_rng(0)
    model = RandomForestRegressor(n_estimators=50, random_state=0).fit(rng.random((5000, 5)), rng.random(5000))
    reg = open_registry(root)
    new = NewVersion(model=model, metric="mae", direction="min", threshold=None, metrics={"mae": 0.1}, params={},
                     data_fingerprint="0" * 64, code_fingerprint="0" * 64, baseline={})
    raw_path = work / "raw.joblib"
    out = [
        ("bare joblib.dump", median_time(lambda: joblib.dump(model, raw_path), reps)),
        ("kiban: register a version (dump + fsync + sha256 + gate + store row)",
         median_time(lambda: reg.register("warehouse.m", new), reps)),
        ("bare joblib.load", median_time(lambda: joblib.load(raw_path), reps)),
        ("kiban: load the current version (path check + sha256 + load)",
         median_time(lambda: reg.load("warehouse.m"), reps)),
    ]
    reg.store.close()
    return out, raw_path.stat().st_size  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pub = publish(args.rows, args.reps, work)
        drift, approx, exact = drift_stats(args.rows, args.reps)
        prints = fingerprint(args.rows, args.reps)
        reg, size = registry(args.reps, work)
    lines = [MARKER, "", f"`bench/ml.py --rows {args.rows} --reps {args.reps}` (medians, one process, "
             f"{time.strftime('%Y-%m-%d')}; shared 2-core machine).", ""]

    def table(title: str, rows: list[tuple[str, float]], reference: float, against: str) -> None:
        lines.extend([f"**{title}**", "", f"| what | seconds | × {against} |", "|---|---:|---:|"])
        lines.extend(f"| {name} | {t:.3f} | {t / reference:.2f} |" for name, t in rows)
        lines.append("")

    table(f"Publishing {args.rows:,} rows from a Python asset", pub, pub[0][1], "raw engine")
    table(f"Drift statistics on {args.rows:,} values", drift, drift[2][1], "scipy")
    lines.append(f"KS from the stored quantiles {approx:.4f} vs exact {exact:.4f} "
                 f"(difference {abs(approx - exact):.4f}).")
    lines.append("")
    table(f"Fingerprint of a training input of {args.rows:,} rows × 6 columns", prints, prints[0][1], "raw IPC")
    table(f"Registry: a random forest of {size / 1e6:.1f} MB", reg, reg[0][1], "joblib.dump")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARKER, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
