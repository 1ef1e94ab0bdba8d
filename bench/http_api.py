"""HTTP API collection: kiban's http connector against the raw client loop, side by side in one run.

A JSON API on loopback (http.server, pages prepared in memory) serves N records in pages of P with
page-number pagination. *raw* is the loop anyone would write: httpx, ``json.loads``, the records of each page
appended to a list, one ``pyarrow.Table.from_pylist`` at the end. *kiban* is the connector as ``kiban collect``
calls it (``read_batches``: typed columns kept stable over the load, nested objects as JSON text, bad records
quarantined, retries armed). Prints a table and replaces its own section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
from results import write_section  # bench/ is on sys.path when a script in it runs

from kiban.collect.connector import ReadContext, read_batches
from kiban.collect.spec import SourceSpec

MARKER = "## HTTP API collection"


def pages(records: int, size: int) -> list[bytes]:
    out = []
    for start in range(0, records + 1, size):  # the last page is empty: page-number pagination stops there
        chunk = [{"id": i, "sku": f"SKU-{i % 2000:06d}", "store": f"S{i % 50:03d}", "qty": i % 7 + 1,
                  "price": 100.0 + i % 900, "paid": i % 3 == 0, "updated_at": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
                  "customer": {"id": i % 5000, "tier": "gold" if i % 11 == 0 else "basic"}}
                 for i in range(start, min(start + size, records))]
        out.append(json.dumps({"data": {"items": chunk}}).encode())
    return out


class _Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API
    disable_nagle_algorithm = True  # headers and body are two writes: without this each page waits ~40 ms
    pages: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:
        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
        body = self.pages[page - 1] if page <= len(self.pages) else b'{"data": {"items": []}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def raw(base: str) -> int:
    rows: list[dict[str, Any]] = []
    with httpx.Client() as client:
        page = 1
        while True:
            items = json.loads(client.get(f"{base}/items", params={"page": page}).text)["data"]["items"]
            if not items:
                break
            rows.extend(items)
            page += 1
    for row in rows:  # a nested object cannot share a column with text: as JSON text, as kiban does
        row["customer"] = json.dumps(row["customer"])
    return pa.Table.from_pylist(rows).num_rows


def kiban(base: str, root: Path) -> int:
    spec = SourceSpec.model_validate({"type": "http", "base_url": base, "tables": {"items": {
        "path": "/items", "records": "data.items", "pagination": {"type": "page"}}}})
    ctx = ReadContext("bench", "items", spec, spec.tables["items"], root, batch_rows=spec.batch_rows)
    return sum(batch.num_rows for batch in read_batches(ctx))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args(argv)
    handler = type("Api", (_Api,), {"pages": pages(args.records, args.page_size)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    times: dict[str, list[float]] = {"raw": [], "kiban": []}
    with tempfile.TemporaryDirectory() as tmp:
        raw(base), kiban(base, Path(tmp))  # warm-up: imports and first connections are not what is measured
        for _ in range(args.reps):
            for name in ("raw", "kiban"):  # interleaved: both see the same machine
                began = time.perf_counter()
                rows = raw(base) if name == "raw" else kiban(base, Path(tmp))
                times[name].append(time.perf_counter() - began)
                assert rows == args.records, (name, rows)
    server.shutdown()
    raw_s, kiban_s = statistics.median(times["raw"]), statistics.median(times["kiban"])
    pages_n = args.records // args.page_size + 1
    text = (f"{MARKER} ({args.records:,} records in {pages_n} pages of {args.page_size:,}; medians of {args.reps} "
            "after a warm-up)\n\n"
            "A JSON API on loopback with page-number pagination. *raw*: httpx, `json.loads`, one "
            "`pyarrow.Table.from_pylist` at the end (all rows in memory). *kiban*: the `type: http` connector, "
            "batches of `batch_rows`, column kinds kept stable over the load, nested objects as JSON text, "
            "quarantine and retries armed.\n\n"
            "| reader | time | records/s | vs raw |\n|---|---|---|---|\n"
            f"| raw httpx loop | {raw_s:.2f} s | {args.records / raw_s:,.0f} | 1.00× |\n"
            f"| kiban http connector | {kiban_s:.2f} s | {args.records / kiban_s:,.0f} | {kiban_s / raw_s:.2f}× |\n")
    print(text)
    if not args.no_write:
        write_section(MARKER, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
