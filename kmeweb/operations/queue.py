"""The only module that imports rq: queues, enqueueing after commit, and the worker.

Jobs take ids only and run inside an application context that the worker
provides, so job functions never build an app themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from flask import Flask, current_app
from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job

QUEUES: tuple[str, ...] = ("knox", "default", "maintenance")


def redis_connection(url: str | None = None) -> Redis:
    return Redis.from_url(url or current_app.config["REDIS_URL"])


def get_queue(name: str = "default", connection: Redis | None = None) -> Queue:
    prefix = current_app.config.get("RQ_QUEUE_PREFIX", "")
    return Queue(f"{prefix}{name}", connection=connection or redis_connection())


def enqueue(
    func: str,
    *args: Any,
    job_id: str | None = None,
    queue: str = "default",
    connection: Redis | None = None,
    **options: Any,
) -> Job:
    """Enqueue `func` (a dotted path) with id-only arguments; call only after commit."""
    return get_queue(queue, connection).enqueue(func, *args, job_id=job_id, **options)


ACTIVE_STATUSES = ("queued", "started", "scheduled", "deferred")


def job_status(job_id: str, connection: Redis | None = None) -> str | None:
    """The RQ status of a job ("queued", "started", ...), or None when Redis has no such job."""
    try:
        job = Job.fetch(job_id, connection=connection or redis_connection())
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    return None if status is None else str(getattr(status, "value", status))


def enqueue_unique(
    func: str,
    *args: Any,
    job_id: str,
    queue: str = "default",
    connection: Redis | None = None,
    **options: Any,
) -> Job | None:
    """Enqueue unless a job with this id is already waiting or running; returns the new job.

    Two callers racing may both enqueue: jobs are idempotent and claim their work in the
    database, so a duplicate only finds nothing left to do.
    """
    connection = connection or redis_connection()
    if job_status(job_id, connection) in ACTIVE_STATUSES:
        return None
    return enqueue(func, *args, job_id=job_id, queue=queue, connection=connection, **options)


def enqueue_in(
    seconds: float, func: str, *args: Any, job_id: str, queue: str = "default", **options: Any
) -> Job:
    """Schedule `func` to run after `seconds` (the worker's scheduler enqueues it)."""
    from datetime import timedelta

    return get_queue(queue).enqueue_in(
        timedelta(seconds=seconds), func, *args, job_id=job_id, **options
    )


class _AppContext:
    """Runs each job inside the Flask application context."""

    app: Flask | None = None
    parent_pid: int = 0

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        assert self.app is not None
        with self.app.app_context():
            from kmeweb.extensions import db

            if os.getpid() != self.parent_pid:
                # A forked work horse must not reuse the parent's database connections.
                db.engine.dispose(close=False)
            try:
                return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
            finally:
                db.session.remove()


class AppWorker(_AppContext, Worker):
    """An RQ worker that forks a work horse per job, each inside the app context."""


class AppSimpleWorker(_AppContext, SimpleWorker):
    """The same, running jobs in its own process (no fork): for tests and debugging."""


def run_worker(
    app: Flask,
    queues: Sequence[str] = QUEUES,
    burst: bool = False,
    with_scheduler: bool = True,
    name: str | None = None,
    simple: bool = False,
) -> bool:
    """Run an RQ worker on `queues` until stopped (or until empty with burst)."""
    connection = redis_connection(app.config["REDIS_URL"])
    prefix = app.config.get("RQ_QUEUE_PREFIX", "")
    worker_class = AppSimpleWorker if simple else AppWorker
    worker_class.app = app
    worker_class.parent_pid = os.getpid()
    worker = worker_class(
        [Queue(f"{prefix}{q}", connection=connection) for q in queues],
        connection=connection,
        name=name,
    )
    return worker.work(burst=burst, with_scheduler=with_scheduler)
