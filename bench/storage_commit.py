"""A load's Delta commit on shared storage: the landed Parquet files put as they are and named by one commit
(``DeltaTables.commit_files``, issue 18) against delta-rs rewriting their rows (``DeltaTables.commit_load``, what
every load did before) — on a local disk (a shared mount) and on an S3-compatible server on loopback (moto).

Run: ``python bench/storage_commit.py [LOADS] [ROWS]`` (needs the storage and test extras). Prints a Markdown table;
the S3 server's own CPU is another process's and not counted, so compare the CPU columns.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kiban.storage.delta import DeltaTables

sys.path.insert(0, str(Path(__file__).parent))
from storage import KEY, REGION, SECRET, _server  # the moto server of bench/storage.py


def landed(folder: Path, n: int, rows: int) -> Path:
    """A load's file as kiban lands it (zstd, dictionary encoding where the writer chooses)."""
    table = pa.table({"id": pa.array(range(n * rows, (n + 1) * rows), pa.int64()),
                      "amount": pa.array([i * 0.25 for i in range(rows)], pa.float64()),
                      "note": pa.array([f"row {i % 1000}" for i in range(rows)], pa.string()),
                      "_load_id": pa.array([f"load{n:04d}"] * rows, pa.string())})
    path = folder / f"load{n:04d}.parquet"
    pq.write_table(table, path, compression="zstd")
    return path


def timed(loads: int, commit: Callable[[int], object]) -> tuple[float, float]:
    wall = cpu = 0.0
    for n in range(1, loads + 1):
        w, c = time.perf_counter(), time.process_time()
        commit(n)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
    return wall / loads, cpu / loads


def main(loads: int, rows: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="kiban-bench-commit-"))
    files = [landed(work, n, rows) for n in range(loads + 1)]
    proc, endpoint = _server()
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                     region_name=REGION).create_bucket(Bucket="bench")
        s3 = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": KEY,
              "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ALLOW_HTTP": "true", "AWS_CONDITIONAL_PUT": "etag"}
        print(f"{loads} loads of {rows:,} rows each, per load:\n")
        print("| where | commit | wall (s) | CPU (s) |\n|---|---|---:|---:|")
        for where, root, options in (("local disk", str(work / "disk"), {}), ("S3 (moto)", "s3://bench/t", s3)):
            for how in ("rewrite", "as they are"):
                delta = DeltaTables(f"{root}-{how.replace(' ', '_')}", options)
                delta.commit_load("t", [files[0]], "load0000")  # the table's first commit: always a rewrite

                def commit(n: int, delta: DeltaTables = delta, how: str = how) -> object:
                    base = n - 1
                    if how == "rewrite":
                        return delta.commit_load("t", [files[n]], f"load{n:04d}", base=base)
                    return delta.commit_files("t", [files[n]], f"load{n:04d}", base)

                wall, cpu = timed(loads, commit)
                assert delta.latest("t") == loads
                print(f"| {where} | {how} | {wall:.3f} | {cpu:.3f} |")
    finally:
        proc.terminate()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, int(sys.argv[2]) if len(sys.argv) > 2 else 500_000)
