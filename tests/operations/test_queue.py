"""The queue (kmeweb.operations.queue, commit, dispatch) on real Redis with real RQ workers:
work is enqueued only once its rows are committed, under the operation's id, on the queue of
its workload, once while it waits; Redis down at commit loses nothing; periodic jobs are data."""

from __future__ import annotations

import importlib
import logging

import pytest
import redis
from rq.job import Job
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import db
from kmeweb.operations import dispatch, queue
from kmeweb.operations import services as operations
from kmeweb.operations.commit import on_commit
from kmeweb.operations.models import Operation
from kmeweb.sync.schedule import PERIODIC, Scheduler

RAN = "tests.operations.sample_jobs.record_run"
FAILS = "tests.operations.sample_jobs.fail"
DOWN = "redis://127.0.0.1:9/0"  # nothing listens there


def _queued_operation(session, kind: str = "device.move") -> Operation:
    """An operation whose job goes to Redis when the transaction commits."""
    operation = operations.create_operation(session, kind, f"{kind} for the test", 1, "test")
    dispatch.after_commit(session, operation)
    return operation


def _run_worker(app) -> None:
    """A real RQ worker in this process (no fork) until the queues are empty."""
    db.session.commit()
    queue.run_worker(app, burst=True, with_scheduler=False, simple=True)
    db.session.expire_all()


def _runs(session, tag: str) -> int:
    return len(
        [
            e
            for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "test.job_ran"))
            if e.details.get("tag") == tag
        ]
    )


def test_a_rolled_back_transaction_enqueues_nothing(app, session):
    operation = _queued_operation(session)
    job_id = operation.job_id
    assert queue.job_status(job_id) is None  # not before the commit either
    session.rollback()
    assert queue.job_status(job_id) is None
    # The dropped callback does not fire with the next, unrelated commit.
    operations.create_operation(session, "pull", "Unrelated", 0, "test")
    session.commit()
    assert queue.job_status(job_id) is None
    assert session.scalar(select(Operation).where(Operation.label.like("device.move%"))) is None

    committed = _queued_operation(session)
    assert queue.job_status(committed.job_id) is None
    session.commit()
    assert queue.job_status(committed.job_id) == "queued"


@pytest.mark.parametrize(
    ("kind", "func", "queue_name"),
    [
        ("pull", queue.PULL_JOB, "knox"),
        ("pull.full", queue.PULL_JOB, "knox"),
        ("device.import", queue.IMPORT_JOB, "default"),
        ("device.move", queue.PUSH_JOB, "knox"),
        ("profile.create", queue.PUSH_JOB, "knox"),
    ],
)
def test_the_job_id_is_the_operation_id_on_the_queue_of_its_workload(
    app, session, kind, func, queue_name
):
    operation = _queued_operation(session, kind)
    session.commit()
    job = Job.fetch(f"op-{operation.id}", connection=queue.redis_connection())
    assert (job.id, job.func_name, job.args, job.origin) == (
        operation.job_id,
        func,
        (operation.id,),
        queue_name,
    )
    assert job.timeout == queue.job_options(func)["job_timeout"]
    assert queue.get_queue(queue_name).job_ids == [operation.job_id]
    for other in set(queue.QUEUES) - {queue_name}:
        assert queue.get_queue(other).job_ids == []


def test_a_waiting_job_is_not_enqueued_twice_and_a_finished_one_may_run_again(app, session):
    first = queue.enqueue_unique(RAN, "once", job_id="unique-1", queue="maintenance")
    assert first is not None
    assert queue.enqueue_unique(RAN, "twice", job_id="unique-1", queue="maintenance") is None
    assert queue.get_queue("maintenance").job_ids == ["unique-1"]
    _run_worker(app)
    assert (_runs(session, "once"), _runs(session, "twice")) == (1, 0)
    assert queue.job_status("unique-1") == "finished"
    # The job ran inside the app: it saw the app's settings.
    job = Job.fetch("unique-1", connection=queue.redis_connection())
    assert job.return_value() == app.config["REDIS_URL"]
    # Done: asking again enqueues it again.
    assert queue.enqueue_unique(RAN, "again", job_id="unique-1", queue="maintenance")
    _run_worker(app)
    assert _runs(session, "again") == 1


def test_a_failed_job_is_kept_for_inspection_and_can_be_enqueued_again(app, session):
    queue.enqueue(FAILS, "KME said no", job_id="doomed", queue="default")
    _run_worker(app)
    assert queue.job_status("doomed") == "failed"
    job = Job.fetch("doomed", connection=queue.redis_connection())
    assert "RuntimeError: KME said no" in job.latest_result().exc_string
    assert "doomed" in queue.get_queue("default").failed_job_registry.get_job_ids()
    # Failed is not active: the sweeper or a retry may enqueue the same id again.
    assert queue.enqueue_unique(RAN, "retried", job_id="doomed", queue="default") is not None
    _run_worker(app)
    assert _runs(session, "retried") == 1


def test_redis_down_at_commit_keeps_the_work_and_runs_the_other_callbacks(
    app, session, caplog, redis_url
):
    ran = []
    app.config["REDIS_URL"] = DOWN
    try:
        operation = _queued_operation(session)
        on_commit(session, lambda: ran.append("after"))
        with caplog.at_level(logging.WARNING, logger="kmeweb"):
            session.commit()  # does not raise: the row is saved, the enqueue is owed
    finally:
        app.config["REDIS_URL"] = redis_url
    assert ran == ["after"]
    assert "enqueue after commit failed; the sweeper will send it" in caplog.text
    session.expire_all()
    saved = session.get(Operation, operation.id)
    assert saved.status == "queued"
    assert queue.job_status(saved.job_id) is None  # Redis never got it


def test_queues_carry_the_deployments_prefix(app, session):
    app.config["RQ_QUEUE_PREFIX"] = "blue-"
    operation = _queued_operation(session, "pull")
    session.commit()
    conn = queue.redis_connection()
    assert Job.fetch(operation.job_id, connection=conn).origin == "blue-knox"
    queue.enqueue(RAN, "blue", queue="maintenance")
    assert len(queue.get_queue("maintenance")) == 1
    app.config["RQ_QUEUE_PREFIX"] = ""
    assert len(queue.get_queue("knox")) == 0 and len(queue.get_queue("maintenance")) == 0
    # A worker of the other deployment leaves blue's jobs alone.
    _run_worker(app)
    assert _runs(session, "blue") == 0
    app.config["RQ_QUEUE_PREFIX"] = "blue-"
    queue.get_queue("knox").empty()  # the pull would need an integration; not this test's
    _run_worker(app)
    assert _runs(session, "blue") == 1


def test_periodic_jobs_name_importable_functions_on_known_queues(app):
    for job in PERIODIC:
        module, _, name = job.func.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), job.func
        assert job.queue in queue.QUEUES, job.name
    assert len({p.name for p in PERIODIC}) == len(PERIODIC)


def test_a_due_periodic_job_still_waiting_is_not_enqueued_twice(app, redis_url):
    app.config.update(SWEEP_INTERVAL_S=60, ALERT_INTERVAL_S=60, OVERVIEW_CACHE_S=60)
    scheduler = Scheduler(app, redis.Redis.from_url(redis_url))
    fired = scheduler.tick(now=1000.0)
    declared = {p.name: p for p in PERIODIC}
    for name in fired:
        job = Job.fetch(f"periodic-{name}", connection=queue.redis_connection())
        assert (job.func_name, job.origin) == (declared[name].func, declared[name].queue)
    # A day later everything is due again, but no worker took the first jobs yet.
    assert sorted(scheduler.tick(now=1000.0 + 86400)) == sorted(fired)
    waiting = [jid for q in queue.QUEUES for jid in queue.get_queue(q).job_ids]
    assert sorted(waiting) == sorted(f"periodic-{name}" for name in fired)


def test_a_rolled_back_savepoint_keeps_the_outer_transactions_jobs(app, session):
    operation = _queued_operation(session)
    with session.begin_nested() as savepoint:
        operations.create_operation(session, "pull", "Given up", 0, "test")
        savepoint.rollback()
    session.commit()
    assert queue.job_status(operation.job_id) == "queued"
