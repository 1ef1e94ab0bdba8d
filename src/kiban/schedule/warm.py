"""A warm `kiban run` process: Python started and kiban's modules imported before the tick, so the run begins
as soon as the scheduler says go.

Starting Python and importing what a run needs (SQLAlchemy, DuckDB, Typer, Rich, kiban) takes about 0.35 s,
most of the time between a cron tick and the first asset starting. The scheduler keeps one such process
ready (:mod:`kiban.schedule.launcher`). When a tick is due it writes one JSON line to the process's stdin —
the command line, the log file, extra environment — and the process becomes that run: it points stdout and
stderr at the log, and calls kiban's ``main()``. It is still a process of its own (crash isolation is
unchanged), and it reads the project only then, so an edited ``kiban.yml`` is honoured.

If the scheduler goes away first, stdin ends and the process exits without doing anything.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    # what `kiban run` imports anyway; importing it now is the point
    import kiban.checks.gate
    import kiban.cli.commands
    import kiban.cli.progress
    import kiban.engines.duckdb
    import kiban.project.loader
    import kiban.run.runner  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return  # the scheduler stopped before this process was needed
    order = json.loads(line)
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.update(order.get("env", {}))
    os.chdir(order.get("cwd", "."))
    sys.argv = ["kiban", *order["args"]]
    from kiban.cli.root import main as kiban_main  # the full command: a warm process has loaded it all already

    kiban_main()


if __name__ == "__main__":
    main()
