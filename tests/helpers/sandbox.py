"""A project with 2,000 people (their e-mail is PII) and queries that each ask for gigabytes (shared by the
sandbox, read-isolation and resident-reader tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kiban.project import Project, load_project
from kiban.run import RunOptions, run_project

LAKE = {"people": "select i as id, 'user' || i || '@example.com' as email, i % 7 as grp from range(1, 2001) t(i)"}
FILES = {"models/lake/people.yml": "columns:\n  - {name: email, tags: [pii]}\n",
         "models/mart/groups.sql": "select grp, count(*) as n from lake.people group by grp"}

# each asks for gigabytes one way or another: DuckDB's buffers, a giant value, lists, a cross join, or a result
# that only becomes big in Python (outside DuckDB's own accounting)
HOGS = [
    "select length(list(i)) from range(100000000) t(i)",
    "select length(string_agg(repeat('x', 1000), '')) from range(10000000)",
    "select length(repeat(email, 100000000)) from lake.people where id = 1",
    "select sum(len(l)) from (select range(i) l from range(100000) t(i))",
    "select max(len(l)) from (select a.id, list(b.email || r.range) as l from lake.people a, lake.people b, "
    "range(200) r group by a.id)",
    "select i, count(*) from range(40000000) t(i) group by i order by 2 desc limit 1",
    "select repeat('x', 100000000) as big from range(12)",
]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def people_project(make_project: Callable[..., Path]) -> Project:
    """The people project, run once."""
    project = load_project(make_project(FILES, lake=LAKE))
    assert run_project(project, RunOptions()).ok
    return project
