#!/usr/bin/env python3
"""Data born on paper, at volume: a form submission of 10,000 rows through the API, and an upload of a
10,000-row CSV (preview, then land), each until the rows are in the lake table (the load committed).

Measured end to end through the console's HTTP handlers (FastAPI's test client, in one process: JSON or the
multipart upload parsed, every row validated, the entry file written and fsync'd, the load of the lake table
committed). Medians of ``--reps`` after a warm-up, each with a new submission. Target: ≤ 2 s each.

    .venv/bin/python bench/forms.py --rows 10000
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import tempfile
import time
from pathlib import Path

FILES = {
    "sources/forms.yml": "type: files\ntables:\n  waste:\n    path: landing/forms/waste/*.parquet\n    settle: 0s\n",
    "forms/waste.yml": """
title: Daily waste count
lands_in: forms.waste
who: [analyst]
fields:
  - {name: store_id, type: integer, required: true, min: 1, max: 999}
  - {name: day, type: date}
  - {name: item, type: text, required: true, allowed: [bread, milk, vegetables, other]}
  - {name: quantity, type: integer, required: true, min: 0, max: 10000}
  - {name: note, type: text, max_length: 20}
""",
}
ITEMS = ["bread", "milk", "vegetables", "other"]


def rows_of(count: int) -> list[dict[str, object]]:
    return [{"store_id": 1 + i % 999, "day": f"2026-12-{1 + i % 28:02d}", "item": ITEMS[i % 4],
             "quantity": i % 100, "note": f"n{i % 50}"} for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web import create_app
    from kiban.web.accounts import Accounts

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "kiban.yml").write_text("name: bench\ntimezone: UTC\n")
        for name, text in FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        accounts = Accounts(Store(load_project(root).state_url))
        accounts.add_user("ana", "ana-password-1", "analyst")
        token = accounts.create_token("ana")
        rows = rows_of(args.rows)
        csv = "store_id,day,item,quantity,note\n" + "".join(
            f"{r['store_id']},{r['day']},{r['item']},{r['quantity']},{r['note']}\n" for r in rows)
        with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
            session, _ = client.app.state.accounts.start_session(client.app.state.accounts.require("ana"), "bench")
            client.cookies.set("kiban_session", session)
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/runs").text).group(1)
            counter = iter(range(10**6))

            def submit() -> None:
                answer = client.post("/api/v1/forms/waste/entries", headers={"Authorization": f"Bearer {token}"},
                                     json={"submission": f"bench-{next(counter):06d}", "rows": rows})
                assert answer.status_code == 200 and answer.json()["loaded"], answer.text

            def upload() -> None:
                preview = client.post("/forms/waste/upload", data={"csrf": csrf},
                                      files={"file": ("waste.csv", io.BytesIO(csv.encode()), "text/csv")})
                assert preview.status_code == 200, preview.text
                action = re.search(r'action="(/forms/waste/upload/[^"]+)"', preview.text).group(1)
                landed = client.post(action, data={"csrf": csrf}, follow_redirects=False)
                assert landed.status_code == 303 and "landed" in landed.headers["location"], landed.text

            for label, fn in (("form submission (API, JSON)", submit), ("upload (CSV: preview, then land)", upload)):
                fn()
                times, cpu = [], []
                for _ in range(args.reps):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    fn()
                    times.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - started_cpu)
                print(f"{label}, {args.rows:,} rows: median {statistics.median(times):.3f} s wall, "
                      f"{statistics.median(cpu):.3f} s CPU (max {max(times):.3f} s; target ≤ 2 s)")


if __name__ == "__main__":
    main()
