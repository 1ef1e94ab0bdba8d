"""Several workers: a run's assets in a shared queue (PostgreSQL state store), built by `kiban worker` processes."""

from kiban.workers.coordinator import run_distributed
from kiban.workers.queue import RunQueue
from kiban.workers.worker import Worker, WorkerOptions

__all__ = ["RunQueue", "Worker", "WorkerOptions", "run_distributed"]
