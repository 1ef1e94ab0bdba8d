"""Starting a job's run: a ``kiban run`` child process per tick, for crash isolation.

A run that crashes, leaks memory or hangs cannot take the scheduler with it; the state store's asset locks
serialise runs of one project on the assets they share, whoever starts them (``--wait`` queues behind a run
in progress for those only).
The child runs in its own session, so a Ctrl-C at the scheduler's terminal reaches the scheduler only,
which then stops its runs with SIGTERM (they cancel cleanly) — and a ``kill -9`` of the scheduler
leaves its runs to finish; the next leader picks up their outcome from the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from kiban.project import Project
from kiban.project.jobs import JobConfig


class Handle(Protocol):
    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def run_id(self) -> str | None: ...

    def terminate(self) -> None: ...

    def wait(self, timeout: float) -> int | None: ...


class Launcher(Protocol):
    def __call__(self, project: Project, job_name: str, job: JobConfig, tick_id: int,
                 resume: bool = False) -> Handle: ...


def run_command(project: Project, job: JobConfig, resume: bool = False) -> list[str]:
    """The ``kiban run`` command line of a job; with ``resume``, ``kiban run --resume`` (after a crash)."""
    args = [sys.executable, "-m", "kiban", "--project", str(project.root), "run"]
    if resume:
        args.append("--resume")
    else:
        args += job.select
        for term in job.exclude:
            args += ["--exclude", term]
    return [*args, "--wait", f"{job.wait:g}", "--log-format", "json"]


@dataclass
class ProcessHandle:
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = None
    _run_id: str | None = field(default=None)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self._log is not None:
            self._log.close()
            self._log = None
        return code

    def run_id(self) -> str | None:
        """The run's id, from the first JSON event it logged."""
        if self._run_id is None and self.log_path.exists():
            with self.log_path.open("rb") as log:
                for line in log:
                    if line.startswith(b"{") and b'"run_id"' in line:
                        try:
                            self._run_id = str(json.loads(line)["run_id"])
                        except (ValueError, KeyError):
                            continue
                        break
        return self._run_id

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.poll()
        return code


def launch_process(project: Project, job_name: str, job: JobConfig, tick_id: int,
                   resume: bool = False) -> ProcessHandle:
    """Start the job's run; its JSON log goes to ``.kiban/logs/scheduler/JOB-TICK.jsonl``.

    The run is handed to a warm process (:mod:`kiban.schedule.warm`) when one is ready — Python started and
    kiban imported ahead of the tick — and another is started for the next tick; else a fresh process.
    """
    folder = project.state_dir / "logs" / "scheduler"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{job_name}-{tick_id}.jsonl"
    command = run_command(project, job, resume)
    extra = {"NO_COLOR": "1", "KIBAN_SCHEDULER_TICK": str(tick_id)}
    spare = _SPARES.pop(project.root, None)
    try:
        if spare is not None and spare.poll() is None and spare.stdin is not None:
            order = {"args": command[3:], "log": str(log_path), "env": extra, "cwd": str(project.root)}
            try:
                spare.stdin.write((json.dumps(order) + "\n").encode())
                spare.stdin.close()
                return ProcessHandle(spare, log_path)
            except OSError:  # it died meanwhile: start the run the slow way
                spare.kill()
        log = log_path.open("ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **extra}, start_new_session=True, cwd=project.root)
        return ProcessHandle(process, log_path, log)
    finally:
        _SPARES[project.root] = _start_spare(project)


# One warm process per project this scheduler runs, started right after the previous one was used.
_SPARES: dict[Path, subprocess.Popen[bytes]] = {}


def _start_spare(project: Project) -> subprocess.Popen[bytes]:
    # stdin is a pipe from this scheduler: when the scheduler exits, however, the spare reads the end and exits
    return subprocess.Popen([sys.executable, "-m", "kiban.schedule.warm"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "NO_COLOR": "1"}, cwd=project.root)


def warm_up(project: Project) -> None:
    """Have a warm process ready before the first tick (the scheduler calls it when it starts leading)."""
    if project.root not in _SPARES or _SPARES[project.root].poll() is not None:
        _SPARES[project.root] = _start_spare(project)


def cool_down() -> None:
    """Let the warm processes go (the scheduler stops): their stdin ends and they exit."""
    while _SPARES:
        _root, spare = _SPARES.popitem()
        if spare.stdin is not None:
            spare.stdin.close()
        try:
            spare.wait(5)
        except subprocess.TimeoutExpired:
            spare.kill()
