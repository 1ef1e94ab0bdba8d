"""The machine's time zone never changes a result: the project's `timezone:` is set on every engine session.

The same queries run in fresh processes under TZ=UTC, Asia/Tokyo and America/Los_Angeles (and PGTZ, which
libpq sends as the session's zone); DuckDB and PostgreSQL must answer the same in each, and the same as the
project's zone says. Spark gets ``spark.sql.session.timeZone`` (test_engine_checks: ``hour(ordered_at) < 12``
in Asia/Tokyo judges the same rows on Spark as on DuckDB). (Before issue 18, DuckDB followed the machine:
`hour(ordered_at) < 12` counted 360,984
rows under UTC and 48,111 under Asia/Tokyo.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ZONES = ("UTC", "Asia/Tokyo", "America/Los_Angeles")
QUERY = ("select hour(t) as h, cast(t as date) as d, dayname(t) as w, strftime(t, '%Y-%m-%d %H:%M') as s "
         "from (select cast('2024-03-10 09:30:00+00' as timestamptz) as t union all "
         "select cast('2024-12-31 20:00:00+00' as timestamptz)) x order by t")

SCRIPT = """
import json, sys
from kiban.engines import open_engine
from kiban.engines.dialect import transpile
query, url = sys.argv[1], sys.argv[2]
out = {}
duck = open_engine("duckdb:///" + sys.argv[3], "Asia/Tokyo")
out["duckdb"] = [list(map(str, r)) for r in duck.session().execute(query)]
duck.close()
if url:
    pg = open_engine(url, "Asia/Tokyo")
    session = pg.session()
    out["postgres"] = [list(map(str, r)) for r in session.execute(transpile(query, "postgres", "q"))]
    session.close()
    pg.close()
print(json.dumps(out))
"""


def answers(zone: str, url: str, folder: Path) -> dict[str, list[list[str]]]:
    env = {**os.environ, "TZ": zone, "PGTZ": zone}
    done = subprocess.run([sys.executable, "-c", SCRIPT, QUERY, url, str(folder / f"{zone.replace('/', '_')}.duckdb")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, list[list[str]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_machine_zone_never_changes_a_result(postgres_url: str, tmp_path: Path) -> None:
    seen = {zone: answers(zone, postgres_url, tmp_path) for zone in ZONES}
    expected = [["18", "2024-03-10", "Sunday", "2024-03-10 18:30"],
                ["5", "2025-01-01", "Wednesday", "2025-01-01 05:00"]]
    for zone, result in seen.items():
        assert result["duckdb"] == expected, zone
        assert result["postgres"] == expected, zone
