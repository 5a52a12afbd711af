"""A real RQ worker for the bench scripts, timed to the end of the work it did."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import _env  # noqa: F401  (the repository on sys.path, the run's own instance folder)
from flask import Flask
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from kmeweb.operations.queue import QUEUES, get_queue, redis_connection, run_worker


def work_until_done(app: Flask) -> float:
    """Run a real RQ worker (forking a work horse per job, as `flask worker` does) until the
    queues are empty; return the seconds from this call to the end of the last job it ran.

    A burst worker then shuts down, and RQ's shutdown joins its pubsub thread for up to 1 s
    (rq.worker.BaseWorker.unsubscribe): timed to its return, 3 of 4 Approve All Devices
    pushes on PostgreSQL took 3.2-3.4 s around jobs of 2.2-2.3 s. A worker that serves
    for good never shuts down after a job, so that second is not part of any figure."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    run_worker(app, burst=True, with_scheduler=False)
    returned = time.perf_counter() - started
    ends: list[datetime] = []
    with app.app_context():
        connection = redis_connection()
        queues = [get_queue(name, connection) for name in QUEUES]
    for queue in queues:
        for registry in (FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)):
            for job in Job.fetch_many(registry.get_job_ids(), connection=connection):
                ended = job.ended_at if job is not None else None
                if ended is not None:
                    ended = ended if ended.tzinfo else ended.replace(tzinfo=UTC)
                    if ended >= started_at:
                        ends.append(ended)
    if not ends:
        return returned
    return min(returned, (max(ends) - started_at).total_seconds())
