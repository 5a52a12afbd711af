"""The only module that imports rq: queues, enqueueing after commit, and the worker.

Jobs take ids only and run inside an application context that the worker
provides, so job functions never build an app themselves.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry, SimpleWorker, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException, get_default_death_penalty_class

from kmeweb.extensions import db

log = logging.getLogger("kmeweb.queue")

QUEUES: tuple[str, ...] = ("knox", "default", "maintenance")


class JobTimeout(BaseException):  # noqa: N818 - named for what it is, like KeyboardInterrupt
    """What our workers raise inside a job that ran past its job_timeout.

    RQ raises its JobTimeoutException, an Exception, from a signal handler: wherever the
    job is when the alarm fires. A broad `except Exception` there swallows it (the Knox
    metrics observer around its Redis write, an enqueue after commit, logging's
    Handler.emit, a library's retry loop), RQ's alarm does not fire again, and the job works
    on after RQ gave up on it (tests/sync/test_job_timeouts.py shows it). Like
    KeyboardInterrupt, a BaseException goes through those handlers; RQ's worker catches
    whatever a job raises and fails the job with it. Job code that cleans up on a failure
    catches JOB_FAILURES and re-raises.
    """


#: What a job that records why it stopped catches (and re-raises): any error, or RQ's timeout.
JOB_FAILURES: tuple[type[BaseException], ...] = (Exception, JobTimeout)


class DeathPenalty(get_default_death_penalty_class()):  # type: ignore[misc]
    """RQ's own death penalty (SIGALRM on Unix), raising JobTimeout for a job's timeout.

    RQ hands it JobTimeoutException for the job and its callbacks; the worker's watch on its
    work horse (HorseMonitorTimeoutException) is left as RQ wrote it.

    A job that ends more than a second past its timeout without being stopped is logged as a
    warning, with what the process's SIGALRM looked like then: a job timeout that cannot
    fire is worth an operator's attention (and tests/sync/test_job_timeouts.py once saw a
    push run 3.4 s past a 2 s timeout, cause not found).
    """

    def __init__(self, timeout: Any, exception: type[BaseException] = JobTimeout, **kwargs: Any):
        if exception is JobTimeoutException:
            exception = JobTimeout
        super().__init__(timeout, exception, **kwargs)
        self._armed_at = 0.0
        self._fired = False

    def setup_death_penalty(self) -> None:
        self._armed_at = time.monotonic()
        super().setup_death_penalty()

    def handle_death_penalty(self, *args: Any) -> None:
        self._fired = True
        super().handle_death_penalty(*args)

    def cancel_death_penalty(self) -> None:
        ran = time.monotonic() - self._armed_at
        unstopped = (
            self._exception is JobTimeout and not self._fired and 0 < self._timeout < ran - 1
        )
        state = _alarm_state() if unstopped else ""  # before RQ puts the alarm and handler back
        super().cancel_death_penalty()
        if unstopped:
            log.warning(
                "a job ran %.1f s against its %s s timeout and was not stopped (%s)",
                ran,
                self._timeout,
                state,
            )


def _alarm_state() -> str:
    """SIGALRM's handler, whether this thread blocks it or has it pending, and the alarm left."""
    if not hasattr(signal, "SIGALRM"):
        return "no SIGALRM here"
    handler = signal.getsignal(signal.SIGALRM)
    blocked = signal.SIGALRM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    pending = signal.SIGALRM in signal.sigpending()
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    return (
        f"SIGALRM handler {handler!r}, blocked {blocked}, pending {pending}, "
        f"alarm left {left:.1f} s"
    )


PUSH_JOB = "kmeweb.sync.jobs.push_job"
PULL_JOB = "kmeweb.sync.jobs.pull_job"
IMPORT_JOB = "kmeweb.devices.importer.import_job"
MOVE_SELECTION_JOB = "kmeweb.devices.jobs.move_selection_job"
PORTAL_SELECTION_JOB = "kmeweb.devices.jobs.portal_selection_job"
RULES_APPLY_JOB = "kmeweb.integration.jobs.apply_rules_job"
PURGE_JOB = "kmeweb.ops.jobs.purge_history_job"
CHECK_DEVICE_JOB = "kmeweb.sync.check.check_device_job"
#: Short bookkeeping jobs (sweeper, token expiry, the scheduled pull starters): RQ's own default.
SHORT_JOB_TIMEOUT_S = 180


def job_options(func: str, config: Mapping[str, Any] | None = None) -> dict[str, int]:
    """`job_timeout` and `failure_ttl` for a job function, derived from the settings.

    RQ kills a job that runs past its job_timeout (180 s unless told). A push works for up to
    PUSH_BUDGET_S and then finishes the change in hand, which may take one change lease
    (CHANGE_LEASE_S) more; a pull is sized by PULL_TIMEOUT_S (default an hour: a full pull of a
    million devices); the history purge works for PURGE_BUDGET_S and then ends the batch in
    hand. Failed jobs stay in RQ's failed registry for JOB_FAILURE_TTL_S.
    """
    cfg = config if config is not None else current_app.config
    if func == PUSH_JOB:
        timeout = float(cfg["PUSH_BUDGET_S"]) + float(cfg["CHANGE_LEASE_S"])
    elif func in (PULL_JOB, CHECK_DEVICE_JOB):  # a check may list every device, as a pull
        timeout = float(cfg["PULL_TIMEOUT_S"])
    elif func in (IMPORT_JOB, MOVE_SELECTION_JOB, PORTAL_SELECTION_JOB):
        # bulk writes of up to a million devices
        timeout = float(cfg["IMPORT_TIMEOUT_S"])
    elif func == PURGE_JOB:
        timeout = max(SHORT_JOB_TIMEOUT_S, float(cfg["PURGE_BUDGET_S"]) + SHORT_JOB_TIMEOUT_S)
    else:
        timeout = SHORT_JOB_TIMEOUT_S
    return {"job_timeout": math.ceil(timeout), "failure_ttl": math.ceil(cfg["JOB_FAILURE_TTL_S"])}


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
    """Enqueue `func` (a dotted path) with id-only arguments; call only after commit.

    The job gets `job_options(func)` unless `options` say otherwise.
    """
    options = {**job_options(func), **options}
    return get_queue(queue, connection).enqueue(func, *args, job_id=job_id, **options)


ACTIVE_STATUSES = ("queued", "started", "scheduled", "deferred")


def retry_policy(intervals: Sequence[int]) -> Retry | None:
    """RQ retries a failed job once per interval (seconds), in order; None without intervals."""
    intervals = [max(0, int(i)) for i in intervals]
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def job_status(job_id: str, connection: Redis | None = None) -> str | None:
    """The RQ status of a job ("queued", "started", ...), or None when Redis has no such job."""
    try:
        job = Job.fetch(job_id, connection=connection or redis_connection())
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    return None if status is None else str(getattr(status, "value", status))


def job_last_seen(job_id: str, connection: Redis | None = None) -> datetime | None:
    """When a job was last known alive: the work horse's last heartbeat (RQ sends one every
    job monitoring interval while the job runs), else when it started; None if unknown."""
    try:
        job = Job.fetch(job_id, connection=connection or redis_connection())
    except NoSuchJobError:
        return None
    seen = job.last_heartbeat or job.started_at
    if seen is not None and seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen


def monitoring_interval(config: Mapping[str, Any]) -> int:
    """How often a worker heartbeats a running job: often enough that a live pull is seen
    several times within PULL_STALE_S (RQ's default is 30 s)."""
    return max(1, min(30, int(float(config["PULL_STALE_S"]) / 4)))


def forget_dead_job(
    job_id: str, config: Mapping[str, Any], connection: Redis | None = None
) -> bool:
    """Delete a job RQ still calls "started" whose work horse stopped heartbeating for three
    monitoring intervals (its worker was killed with -9; RQ notices only at a maintenance pass,
    10 to 15 minutes later), so that the same id can be enqueued again. True when it did."""
    connection = connection or redis_connection()
    if job_status(job_id, connection) != "started":
        return False
    seen = job_last_seen(job_id, connection)
    limit = timedelta(seconds=3 * monitoring_interval(config))
    if seen is not None and datetime.now(UTC) - seen <= limit:
        return False
    try:
        Job.fetch(job_id, connection=connection).delete()
    except NoSuchJobError:
        return False
    log.warning("job %s was started by a worker that stopped: enqueued again", job_id)
    return True


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
    options = {**job_options(func), **options}
    return get_queue(queue).enqueue_in(
        timedelta(seconds=seconds), func, *args, job_id=job_id, **options
    )


class _AppContext:
    """Runs each job inside the Flask application context."""

    app: Flask | None = None
    parent_pid: int = 0
    death_penalty_class = DeathPenalty

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        assert self.app is not None
        with self.app.app_context():
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
        job_monitoring_interval=monitoring_interval(app.config),
    )
    return worker.work(burst=burst, with_scheduler=with_scheduler)


#: Backoff between attempts to reach a lost Redis (seconds): doubles up to the cap.
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0


def run_worker_resilient(
    app: Flask,
    queues: Sequence[str] = QUEUES,
    burst: bool = False,
    with_scheduler: bool = True,
    name: str | None = None,
) -> None:
    """`run_worker` that outlives a lost Redis: RQ's loop quits on a Redis error outside its
    dequeue wait, so this waits for Redis with exponential backoff and starts a new worker.
    SIGTERM/SIGINT (RQ's warm shutdown, or during the wait) stop it as usual."""
    log = logging.getLogger("kmeweb.worker")
    stop = {"requested": False}
    while True:
        connection = redis_connection(app.config["REDIS_URL"])
        prefix = app.config.get("RQ_QUEUE_PREFIX", "")
        AppWorker.app = app
        AppWorker.parent_pid = os.getpid()
        worker = AppWorker(
            [Queue(f"{prefix}{q}", connection=connection) for q in queues],
            connection=connection,
            name=name,
            job_monitoring_interval=monitoring_interval(app.config),
        )
        try:
            worker.work(burst=burst, with_scheduler=with_scheduler)
        except (RedisConnectionError, RedisTimeoutError):
            pass  # raised by RQ's teardown when Redis is gone; handled below
        if burst or worker._shutdown_requested_date is not None:  # noqa: SLF001
            return
        if _redis_answers(connection):
            log.error("worker loop ended with Redis up; starting a new worker")
            time.sleep(RECONNECT_FIRST_S)
            continue

        def _stop(_signum, _frame) -> None:
            stop["requested"] = True

        previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
        delay = RECONNECT_FIRST_S
        try:
            while not stop["requested"]:
                log.warning("Redis connection lost; retrying in %.0f s", delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not stop["requested"]:
                    time.sleep(0.1)
                if _redis_answers(connection):
                    log.warning("Redis answers again; worker resumes")
                    break
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stop["requested"]:
            return


def _redis_answers(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except Exception:  # noqa: BLE001 - any failure means not yet
        return False
