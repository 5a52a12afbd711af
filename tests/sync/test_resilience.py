"""Nothing is lost when KME misbehaves, Redis forgets, or workers die or compete."""

from __future__ import annotations

import redis
from sqlalchemy import func, select

from kmeweb.devices import services as device_services
from kmeweb.devices.models import Device
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.operations import services as operations
from kmeweb.operations.models import ACTIVE, Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles.models import Profile
from kmeweb.sync.jobs import start_pull
from tests.sync_fixtures import kme_profile, wait_until


def _pull_and_approve(session, work, upload_ids=None) -> list[int]:
    """Pull, approve the given KME uploads (default: all) and push; returns device ids."""
    start_pull(session, "test")
    session.commit()
    work()
    uploads = session.scalars(select(Upload)).all()
    for upload in uploads:
        if upload_ids is None or upload.kme_upload_id in upload_ids:
            approvals.approve_upload(session, upload.id, "test")
    session.commit()
    work()
    stmt = select(Device.id).where(Device.approval == "approved").order_by(Device.id)
    return list(session.scalars(stmt))


def _unfinished(session) -> int:
    return session.scalar(
        select(func.count()).select_from(Change).where(Change.status.in_(("pending", "running")))
    )


def _all_done(session) -> bool:
    return _unfinished(session) == 0


def test_thirty_percent_429_and_503_still_completes(session, integration, sim, work, app):
    app.config.update(KNOX_BATCH_SIZE=100, KNOX_PAGE_SIZE=100)  # many calls, many faults
    sim.fault(path="/kcs/*", status=429, rate=0.15, retryAfter=0)
    sim.fault(path="/kcs/*", status=503, rate=0.18)
    device_ids = _pull_and_approve(session, work)
    assert len(device_ids) == 1450
    sales = kme_profile(session, "Sales")
    session.commit()
    device_services.move_devices(session, device_ids[:1000], sales.id, "test")
    session.commit()
    for _ in range(20):  # changes waiting on a backoff delay are picked up by later runs
        work()
        if _all_done(session):
            break
    assert _all_done(session)
    assert session.scalar(select(func.count()).where(Change.status == "failed")) == 0
    counters = sim.counters()["endpoints"]
    injected = sum(c.get("429", 0) + c.get("503", 0) for c in counters.values())
    assert injected >= 8  # the faults really happened (about 30% of 50-odd calls)
    sales = session.get(Profile, sales.id)
    devices = sim.devices()
    in_sales = [i for i in device_ids[:1000]]
    kme_ids = dict(session.execute(select(Device.id, Device.kme_device_id)).all())
    assert all(devices[kme_ids[i]].profile_id == sales.kme_profile_id for i in in_sales)
    assert session.scalar(select(func.count()).where(Device.sync_state != "synced")) == 0
    assert session.scalar(select(func.count()).where(Operation.status != "done")) == 0


def test_permanent_400_fails_that_change_with_the_knox_message_only(
    session, integration, sim, work, login, client
):
    from kmeweb.profiles import services as profile_services

    device_ids = _pull_and_approve(session, work)
    broken, ok = kme_profile(session, "Broken"), kme_profile(session, "Fine")
    session.commit()
    work()
    broken, ok = session.get(Profile, broken.id), session.get(Profile, ok.id)
    # From now on KME refuses every update of "Broken" (and only of it).
    sim.fault(
        path=f"/kcs/v1/kme/profiles/{broken.kme_profile_id}",
        methods=["PUT"],
        status=400,
        rate=1.0,
        code=4001700,
        message="BULK_ENROLL_PROFILE_INVALID",
    )
    for profile in (broken, ok):
        profile_services.update_profile(
            session,
            profile.id,
            {"name": profile.name, "description": "changed", "config": profile.config},
            profile.version,
            "test",
        )
    session.commit()
    device_services.move_devices(session, device_ids[:10], ok.id, "test")
    session.commit()
    work()
    broken, ok = session.get(Profile, broken.id), session.get(Profile, ok.id)
    assert broken.sync_state == "error" and "4001700" in broken.sync_error
    assert "BULK_ENROLL_PROFILE_INVALID" in broken.sync_error
    failed = session.scalar(select(Operation).where(Operation.status == "failed"))
    assert "BULK_ENROLL_PROFILE_INVALID" in failed.error
    attempts = session.scalar(select(Change.attempts).where(Change.operation_id == failed.id))
    assert attempts == 1  # a 400 is never retried
    # nothing else was blocked
    assert ok.sync_state == "synced"
    assert sim.profiles()[ok.kme_profile_id]["description"] == "changed"
    assert sim.profiles()[broken.kme_profile_id]["description"] != "changed"
    kme_ids = dict(session.execute(select(Device.id, Device.kme_device_id)).all())
    assert {sim.device(kme_ids[i])["profileId"] for i in device_ids[:10]} == {ok.kme_profile_id}
    # the admin sees it on the Operations page, and Retry works once KME accepts it
    login("admin")
    page = client.get("/operations/?status=failed").get_data(as_text=True)
    assert "BULK_ENROLL_PROFILE_INVALID" in page and "Retry" in page
    sim.control("DELETE", "/faults")
    operations.retry_operation(session, failed.id, "test")
    session.commit()
    work()
    assert session.get(Operation, failed.id).status == "done"
    assert session.get(Profile, broken.id).sync_state == "synced"
    assert sim.profiles()[broken.kme_profile_id]["description"] == "changed"


def test_redis_flush_while_changes_are_pending_loses_nothing(
    session, integration, sim, work, worker_processes, redis_url
):
    device_ids = _pull_and_approve(session, work)
    sales = kme_profile(session, "Sales")
    session.commit()
    device_services.move_devices(session, device_ids[:600], sales.id, "test")
    session.commit()
    assert _unfinished(session) == 3  # profile create + 2 batches, all waiting in Redis
    redis.Redis.from_url(redis_url).flushdb()  # Redis forgets every queued job
    worker_processes.start("after-flush")
    wait_until(lambda: _all_done(session), 60, "the sweeper to bring the changes back")
    sales = session.get(Profile, sales.id)
    kme_ids = dict(session.execute(select(Device.id, Device.kme_device_id)).all())
    devices = sim.devices()
    assert all(devices[kme_ids[i]].profile_id == sales.kme_profile_id for i in device_ids[:600])


def test_kill_9_during_a_60_change_move_ends_with_every_device_right(
    session, integration, sim, work, worker_processes, app
):
    """A worker is killed with -9 in the middle of a move of 5,000 devices that follows a
    move of half of them: 60 changes of 125 devices (the 40 + 20 changes a move of 20,000
    after one of 10,000 makes in batches of 500; test_move_20000_devices_in_one_call has the
    20,000 in one call). Another worker finishes it and KME ends with every device right."""
    app.config.update(KNOX_BATCH_SIZE=125)  # the moves' changes, as in batches of 500 of 20,000
    big = sim.upload(5_000, reseller=sim.creds["reseller_name"])
    device_ids = _pull_and_approve(session, work, upload_ids={big["uploadId"]})
    assert len(device_ids) == 5_000
    first, second = kme_profile(session, "First"), kme_profile(session, "Second")
    session.commit()
    work()
    sim.control("DELETE", "/counters")
    # Slow KME down so the move is still running when the worker is killed.
    sim.fault(path="/kcs/v1/kme/devices/assignProfile", latencyMs=120, rate=1.0)
    # Half the devices go to First, then every device to Second: order matters.
    device_services.move_devices(session, device_ids[:2_500], first.id, "test")
    session.commit()
    operation = device_services.move_devices(session, device_ids, second.id, "test")
    session.commit()
    op_id = operation.id
    assert _unfinished(session) == 60
    doomed = worker_processes.start("doomed")

    def some_progress() -> bool:
        done = session.scalar(
            select(func.count()).where(Change.status == "done", Change.kind == "device.move")
        )
        return done >= 3

    wait_until(some_progress, 120, "the first worker to make progress")
    worker_processes.kill9(doomed)
    assert _unfinished(session) > 0  # killed mid-way
    sim.control("DELETE", "/faults")
    worker_processes.start("survivor")
    # A worker ends the operation in its own transaction, after the commit of the change that
    # was its last: wait for that too (asserting at _all_done alone raced it: 'running').
    wait_until(
        lambda: _all_done(session) and session.get(Operation, op_id).status not in ACTIVE,
        180,
        "the second worker to finish the move and end its operation",
    )

    second = session.get(Profile, second.id)
    assert session.get(Operation, op_id).status == "done"
    local = dict(
        session.execute(select(Device.profile_id, func.count()).group_by(Device.profile_id)).all()
    )
    assert local.get(second.id) == 5_000
    assert session.scalar(select(func.count()).where(Device.sync_state != "synced")) == 0
    kme_ids = list(session.scalars(select(Device.kme_device_id).where(Device.id.in_(device_ids))))
    assert len(kme_ids) == 5_000
    devices = sim.devices()
    assert {devices[k].profile_id for k in kme_ids} == {second.kme_profile_id}
    counters = sim.counters()["devices"]
    # No device was ever left in the wrong profile: the last assignment KME saw is Second.
    assert all(counters[k]["profiles"][-1] == second.kme_profile_id for k in kme_ids)


def test_three_workers_apply_every_change_exactly_once(
    session, integration, sim, work, worker_processes
):
    device_ids = _pull_and_approve(session, work)
    profiles = [kme_profile(session, f"Team {n}") for n in range(3)]
    session.commit()
    work()
    sim.control("DELETE", "/counters")
    # slow enough that all three workers are up before the backlog is gone
    sim.fault(path="/kcs/v1/kme/devices/assignProfile", latencyMs=400, rate=1.0)
    # 1,450 devices in batches of 100 spread over three profiles: 15 changes.
    from flask import current_app

    current_app.config["KNOX_BATCH_SIZE"] = 100
    chunks = [device_ids[i::3] for i in range(3)]
    for profile, chunk in zip(profiles, chunks, strict=True):
        device_services.move_devices(session, chunk, profile.id, "test")
    session.commit()
    backlog = _unfinished(session)
    assert backlog == 15
    for n in range(3):
        worker_processes.start(f"w{n}", scheduler=(n == 0))
    wait_until(lambda: _all_done(session), 120, "three workers to drain the backlog")
    workers = set(session.scalars(select(Change.claimed_by).where(Change.kind == "device.move")))
    assert len(workers) >= 2, workers  # the backlog really was shared
    counters = sim.counters()["devices"]
    kme_ids = dict(session.execute(select(Device.id, Device.kme_device_id)).all())
    for profile, chunk in zip(profiles, chunks, strict=True):
        profile = session.get(Profile, profile.id)
        for device_id in chunk:
            assert counters[kme_ids[device_id]]["profiles"] == [profile.kme_profile_id]
    assert (
        session.scalar(
            select(func.count()).where(Change.attempts != 1, Change.kind == "device.move")
        )
        == 0
    )


def test_a_push_that_lands_after_a_newer_move_is_corrected(
    session, integration, sim, work, worker_processes
):
    """Worker A sends "First" slowly; meanwhile the admin moves the devices to "Second" and
    that push reaches KME first. A's stale assignment lands last, and A follows it with the
    devices' current state, so KME ends in Second."""
    device_ids = _pull_and_approve(session, work)[:20]
    first, second = kme_profile(session, "First"), kme_profile(session, "Second")
    session.commit()
    work()
    sim.control("DELETE", "/counters")
    device_services.move_devices(session, device_ids, first.id, "test")
    session.commit()
    # A's call is held inside the simulator until B's has landed: no race with the clock.
    hold = sim.fault(path="/kcs/v1/kme/devices/assignProfile", hold=True, remaining=1)
    worker_processes.start("slow", scheduler=False)
    wait_until(
        lambda: sim.control("GET", f"/faults/{hold['id']}/held")["held"] == 1,
        30,
        "worker A's First to reach KME and be held there",
    )
    device_services.move_devices(session, device_ids, second.id, "test")
    session.commit()
    work()  # B: Second reaches KME while A's call is still in flight
    sim.control("POST", f"/faults/{hold['id']}/release")  # A's stale First lands now
    wait_until(lambda: _all_done(session), 60, "A to finish and correct KME")
    second = session.get(Profile, second.id)
    kme_ids = [session.get(Device, i).kme_device_id for i in device_ids]
    counters = sim.counters()["devices"]
    first_kme = session.get(Profile, first.id).kme_profile_id
    # KME really saw First after Second, then the follow-up put Second back.
    assert counters[kme_ids[0]]["profiles"][-3:] == [
        second.kme_profile_id,
        first_kme,
        second.kme_profile_id,
    ]
    assert {sim.device(k)["profileId"] for k in kme_ids} == {second.kme_profile_id}
    assert {session.get(Device, i).sync_state for i in device_ids} == {"synced"}


def test_redis_down_at_commit_saves_the_change_and_the_sweeper_sends_it_later(
    app, session, integration, sim, work, login, actions, client
):
    from kmeweb.operations.queue import ACTIVE_STATUSES, job_status
    from kmeweb.sync import jobs

    sim.fault(path="/kcs/v1/kme/profiles/create", status=400, code=4001700, remaining=1)
    profile = kme_profile(session, "Made while Redis was down")
    session.commit()
    work()
    failed = session.scalar(select(Operation).where(Operation.status == "failed"))
    assert failed is not None
    login("admin")
    redis_url = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = "redis://127.0.0.1:9/0"  # nothing listens there: Redis is down
    try:
        resp = actions.post(f"/operations/{failed.id}/retry", follow_redirects=True)
    finally:
        app.config["REDIS_URL"] = redis_url
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "queued again" in page and "will be sent to KME" in page
    session.expire_all()
    assert session.get(Operation, failed.id).status == "queued"  # committed
    assert job_status(failed.job_id) not in ACTIVE_STATUSES  # but never reached Redis
    assert jobs.sweep_job()["enqueued"] == 1  # Redis is back: the sweeper sends it
    work()
    assert session.get(Operation, failed.id).status == "done"
    profile = session.get(Profile, profile.id)
    assert profile.sync_state == "synced" and profile.kme_profile_id in sim.profiles()


def test_a_pull_whose_worker_vanished_is_failed_and_the_next_pull_starts(
    app, session, integration, sim, work, worker_processes
):
    from kmeweb.sync import jobs

    app.config["PULL_STALE_S"] = 2.0
    worker_processes.env["KMEWEB_PULL_STALE_S"] = "2"  # workers heartbeat every second
    # A slow KME: the pull is still listing devices when its worker is killed.
    sim.fault(path="/kcs/v1/kme/devices/list", latencyMs=3000)
    stuck = start_pull(session, "test")
    session.commit()
    doomed = worker_processes.start("doomed", scheduler=False)

    def running() -> bool:
        return session.get(Operation, stuck.id).status == "running"

    wait_until(running, 60, "the pull to start")
    worker_processes.kill9(doomed)
    sim.control("DELETE", "/faults")
    assert start_pull(session, "test").id == stuck.id  # "already running" meanwhile
    session.rollback()

    def failed() -> bool:
        jobs.sweep_job()
        return session.get(Operation, stuck.id).status == "failed"

    wait_until(failed, 30, "the sweeper to give up on the vanished pull")
    assert session.get(Operation, stuck.id).error == "The worker running it stopped."
    following = start_pull(session, "test")
    session.commit()
    assert following.id != stuck.id
    work()
    assert session.get(Operation, following.id).status == "done"
    assert session.scalar(select(func.count()).select_from(Device)) == 1450
