"""RQ kills a job that runs past its job_timeout (180 s unless told). Push and pull jobs get
timeouts derived from the settings, so a push working for its whole budget is not killed.

Proving it with RQ's real 180 s would cost minutes per run; instead RQ's default is lowered to
2 s for the test (the same class attribute RQ reads) and the push budget to 10 s (in production
240 s against RQ's 180 s), and a simulator latency makes the push work longer than the default,
within its budget and the timeout derived from the settings. The budget leaves room for a
loaded machine: a push that ran out of it would hand the rest to a follow-up job. A control
run of the same job without our options is killed at the default: the scenario is one RQ would
cut short.
"""

from __future__ import annotations

import logging
import signal
import time

import pytest
from rq import Queue
from rq.job import Job
from sqlalchemy import select

from kmeweb import logs
from kmeweb.devices import services as device_services
from kmeweb.devices.models import Device
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.operations import queue as rq_queue
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles.services import ensure_default_profile
from kmeweb.sync.jobs import start_pull
from tests.sync_fixtures import kme_profile

RQ_DEFAULT_S = 2  # stands for RQ's 180 s


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return {**app_config, "PUSH_BUDGET_S": 10.0, "CHANGE_LEASE_S": 6, "KNOX_BATCH_SIZE": 50}


def test_job_timeouts_come_from_the_settings(app):
    cfg = app.config
    push = rq_queue.job_options(rq_queue.PUSH_JOB)
    assert push["job_timeout"] == cfg["PUSH_BUDGET_S"] + cfg["CHANGE_LEASE_S"]
    assert push["job_timeout"] > cfg["PUSH_BUDGET_S"]
    defaults = {"PUSH_BUDGET_S": 240.0, "CHANGE_LEASE_S": 300.0, "PULL_TIMEOUT_S": 3600.0}
    production = {**cfg, **defaults}
    assert rq_queue.job_options(rq_queue.PUSH_JOB, production)["job_timeout"] == 540 > 180
    assert rq_queue.job_options(rq_queue.PULL_JOB, production)["job_timeout"] == 3600
    assert push["failure_ttl"] == cfg["JOB_FAILURE_TTL_S"] == 7 * 86400


def test_enqueued_operations_carry_their_timeouts(app, session, integration):
    operation = start_pull(session, "test")
    session.commit()
    job = Job.fetch(operation.job_id, connection=rq_queue.redis_connection())
    assert job.timeout == app.config["PULL_TIMEOUT_S"]
    assert job.failure_ttl == app.config["JOB_FAILURE_TTL_S"]


def _ready(session, work, sim) -> tuple[list[int], int]:
    """200 approved devices known to KME and a KME profile to move them to."""
    start_pull(session, "test")
    session.commit()
    work()
    upload = session.scalar(select(Upload).order_by(Upload.device_count))
    approvals.approve_upload(session, upload.id, "test")
    target = kme_profile(session, "Slow moves")
    session.commit()
    work()
    ids = list(session.scalars(select(Device.id).where(Device.upload_id == upload.id).limit(200)))
    assert len(ids) == 200
    return ids, target.id


def _move(session, ids: list[int], profile_id: int) -> Operation:
    operation = device_services.move_devices(session, ids, profile_id, "test")
    session.commit()
    return operation


def test_a_push_running_past_rqs_default_timeout_finishes(
    app, session, integration, sim, work, monkeypatch
):
    ids, target = _ready(session, work, sim)
    default_profile = ensure_default_profile(session).id
    session.commit()
    monkeypatch.setattr(Queue, "DEFAULT_TIMEOUT", RQ_DEFAULT_S)
    # 200 devices in 4 changes of 50, 0.8 s a call: the push works for about 3.3 s.
    sim.fault(path="/kcs/v1/kme/devices/assignProfile", latencyMs=800)
    sim.fault(path="/kcs/v2/kme/devices/unassignProfile", latencyMs=800)
    connection = rq_queue.redis_connection()

    moved = _move(session, ids, target)  # enqueued after commit, the way kmeweb enqueues
    job = Job.fetch(moved.job_id, connection=connection)
    assert job.timeout == app.config["PUSH_BUDGET_S"] + app.config["CHANGE_LEASE_S"]
    work()
    job = Job.fetch(moved.job_id, connection=connection)
    assert job.get_status() == "finished"
    assert (job.ended_at - job.started_at).total_seconds() > RQ_DEFAULT_S
    changes = session.execute(
        select(Change.status, Change.attempts, Change.last_error).where(
            Change.operation_id == moved.id
        )
    ).all()
    assert session.get(Operation, moved.id).status == "done", changes
    synced = session.scalars(select(Device.sync_state).where(Device.id.in_(ids))).all()
    assert set(synced) == {"synced"}

    # Control: the same push enqueued bare, with RQ's default timeout, is killed mid-work.
    back = _move(session, ids, default_profile)
    rq_queue.get_queue("knox").empty()  # drop the job enqueued after commit
    bare = rq_queue.get_queue("knox").enqueue(rq_queue.PUSH_JOB, back.id, job_id="bare-push")
    assert bare.timeout == RQ_DEFAULT_S
    work()
    bare = Job.fetch("bare-push", connection=connection)
    assert bare.get_status() == "failed"
    assert "JobTimeout: Task exceeded maximum timeout value" in (
        bare.latest_result().exc_string or ""
    )
    assert session.get(Operation, back.id).status == "running"


def stubborn_job(seconds: float) -> str:
    """Works for `seconds`, inside a handler of every Exception, the way the Knox metrics
    observer guards its Redis write and an enqueue after commit guards against Redis."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except Exception:  # noqa: BLE001, S110 - the handler under test
            pass
    return "worked to the end"


def test_a_job_past_its_timeout_stops_inside_a_handler_of_every_exception(app, work):
    """RQ's timeout, raised inside `except Exception`, used to be swallowed there: the job
    worked on after RQ had given up on it. Our workers raise a timeout no such handler
    catches, and the job fails with it."""
    queue = rq_queue.get_queue("default")
    job = queue.enqueue(f"{__name__}.stubborn_job", 6, job_id="stubborn", job_timeout=1)
    started = time.monotonic()
    work()
    job = Job.fetch("stubborn", connection=rq_queue.redis_connection())
    assert job.get_status() == "failed"
    assert job.return_value() is None
    assert "JobTimeout: Task exceeded maximum timeout value (1 seconds)" in (
        job.latest_result().exc_string or ""
    )
    assert time.monotonic() - started < 6  # stopped at its timeout, not at its own end


def deaf_job(seconds: float) -> str:
    """Works for `seconds` with SIGALRM blocked: RQ's timeout cannot reach it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "worked to the end"


def test_a_job_its_timeout_cannot_stop_is_reported(app, work, tmp_path):
    """A worker whose job timeouts cannot fire says so in its log, with the state of SIGALRM."""
    path = tmp_path / "worker.log"
    root = logging.getLogger()
    level = root.level
    with path.open("w") as stream:
        handler = logs.install(app, stream=stream)  # the worker's log, as `flask worker` has it
        try:
            queue = rq_queue.get_queue("default")
            queue.enqueue(f"{__name__}.deaf_job", 2.5, job_id="deaf", job_timeout=1)
            work()
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
    job = Job.fetch("deaf", connection=rq_queue.redis_connection())
    assert job.get_status() == "finished"
    logged = path.read_text()
    assert "a job ran 2.5 s against its 1 s timeout and was not stopped" in logged
    assert "blocked True, pending True" in logged
