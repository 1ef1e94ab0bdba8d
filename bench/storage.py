"""Shared storage: what one load's commit and one snapshot read cost on an S3-compatible server on loopback, for
the table formats kiban could use (issue 18, item 3; docs/architecture.md "Shared storage: why Delta").

- ``parquet``: the raw baseline — the load's Parquet file put to the bucket (a manifest row in the state store
  would make it visible; that row is not timed);
- ``delta``: delta-rs ``write_deltalake`` append (one commit), then a snapshot's file list by version;
- ``iceberg``: pyiceberg with its SQL catalog (SQLite file) — ``table.append`` (one snapshot), then a scan's files.

Run: ``python bench/storage.py [LOADS] [ROWS]`` (needs the storage and test extras, and pyiceberg for its line).
Prints a Markdown table; the S3 server's own CPU is not counted (another process), so compare the CPU columns.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

KEY, SECRET, REGION = "bench", "bench-secret", "us-east-1"


def _server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def _timed(step: Callable[[], object], times: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(times):
        step()
    return (time.perf_counter() - wall) / times, (time.process_time() - cpu) / times


def main(loads: int = 20, rows: int = 100_000) -> None:
    proc, endpoint = _server()
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                     region_name=REGION).create_bucket(Bucket="bench-lake")
        batch = pa.table({"id": pa.array(range(rows), pa.int64()), "amount": pa.array(range(rows), pa.float64()),
                          "store": pa.array([f"s{i % 50}" for i in range(rows)]),
                          "_load_id": pa.array(["L"] * rows)})
        results: list[tuple[str, float, float, float, float]] = []
        results.append(("parquet (raw put)", *_parquet(endpoint, batch, loads), float("nan"), float("nan")))
        results.append(("delta (delta-rs)", *_delta(endpoint, batch, loads)))
        try:
            results.append(("iceberg (pyiceberg, SQL catalog)", *_iceberg(endpoint, batch, loads)))
        except ImportError:
            print("pyiceberg is not installed: no iceberg line", file=sys.stderr)
    finally:
        proc.terminate()
    print(f"{loads} loads of {rows:,} rows each, on moto server (loopback)\n")
    print("| format | commit wall (s) | commit CPU (s) | snapshot files wall (s) | snapshot files CPU (s) |")
    print("|---|---|---|---|---|")
    for name, cw, cc, rw, rc in results:
        print(f"| {name} | {cw:.3f} | {cc:.3f} | {rw:.3f} | {rc:.3f} |")


def _options(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ALLOW_HTTP": "true", "AWS_CONDITIONAL_PUT": "etag"}


def _parquet(endpoint: str, batch: pa.Table, loads: int) -> tuple[float, float]:
    from pyarrow import fs

    s3 = fs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION, endpoint_override=endpoint[7:],
                         scheme="http")
    counter = iter(range(loads))
    return _timed(lambda: pq.write_table(batch, f"bench-lake/raw/{next(counter)}.parquet", filesystem=s3), loads)


def _delta(endpoint: str, batch: pa.Table, loads: int) -> tuple[float, float, float, float]:
    from deltalake import DeltaTable, write_deltalake

    uri, opts = "s3://bench-lake/delta/t", _options(endpoint)
    commit = _timed(lambda: write_deltalake(uri, batch, mode="append", storage_options=opts), loads)
    read = _timed(lambda: DeltaTable(uri, version=loads - 1, storage_options=opts).file_uris(), 5)
    return (*commit, *read)


def _iceberg(endpoint: str, batch: pa.Table, loads: int) -> tuple[float, float, float, float]:
    from pyiceberg.catalog.sql import SqlCatalog

    folder = Path(tempfile.mkdtemp())
    catalog = SqlCatalog("bench", uri=f"sqlite:///{folder / 'catalog.db'}", warehouse="s3://bench-lake/iceberg",
                         **{"s3.endpoint": endpoint, "s3.access-key-id": KEY, "s3.secret-access-key": SECRET,
                            "s3.region": REGION})
    catalog.create_namespace("lake")
    table = catalog.create_table("lake.t", schema=batch.schema)
    commit = _timed(lambda: table.append(batch), loads)
    read = _timed(lambda: [t.file.file_path for t in catalog.load_table("lake.t").scan().plan_files()], 5)
    return (*commit, *read)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
