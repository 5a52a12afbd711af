"""POST /devices/move with a `filter`: 202 at once with the operation queued, the devices
moved by its job (kmeweb.devices.jobs.move_selection_job), then pushed to KME under the same
operation; a second run moves nothing again; a failed run is retried; the sweeper leaves a
move that has not run yet alone."""

from __future__ import annotations

from sqlalchemy import func, select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices import services as device_services
from kmeweb.devices.jobs import move_selection_job
from kmeweb.devices.models import Device
from kmeweb.devices.selection import DeviceSelection
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.sync.jobs import start_pull, sweep_job
from tests.factories import bulk_devices, make_profile
from tests.sync_fixtures import kme_profile


def _changes(session, operation_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Change).where(Change.operation_id == operation_id)
    )


def _profiles_of(session, ids: list[int]) -> set[int | None]:
    session.expire_all()
    return set(session.scalars(select(Device.profile_id).where(Device.id.in_(ids))))


def _accept(api, source, target, n: int) -> int:
    body = {"filter": {"profile_id": source.id}, "expected_count": n, "profile_id": target.id}
    r = api.post("/devices/move", body)
    assert r.status_code == 202, r.get_json()
    assert r.headers["Location"] == r.get_json()["operation_url"]
    assert r.get_json()["devices"] == n
    return r.get_json()["operation_id"]


def test_a_filter_is_accepted_at_once_and_moved_by_its_job_once(api, session):
    sales, ops = make_profile(session, name="Sales"), make_profile(session, name="Ops")
    ids = bulk_devices(session, 3, sales)
    session.commit()
    operation_id = _accept(api, sales, ops, 3)

    session.expire_all()
    operation = session.get(Operation, operation_id)
    assert (operation.kind, operation.status, operation.total) == (
        "device.move.selection",
        "queued",
        3,
    )
    assert operation.label == "Move 3 devices to Ops"
    assert operation.params["target_profile_id"] == ops.id
    assert _profiles_of(session, ids) == {sales.id} and _changes(session, operation_id) == 0
    start = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.move.start"))
    assert "(API token" in start.actor and start.details["operation_id"] == operation_id

    assert move_selection_job(operation_id) == 3
    session.expire_all()
    assert _profiles_of(session, ids) == {ops.id}
    assert set(session.scalars(select(Device.sync_state).where(Device.id.in_(ids)))) == {"pending"}
    rows = _changes(session, operation_id)
    assert rows >= 1
    assert {c.kind for c in session.scalars(select(Change))} == {"device.move"}
    moved = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.move"))
    assert "(API token" in moved.actor and moved.details["operation_id"] == operation_id
    assert session.get(Operation, operation_id).status == "running"  # until its push is done

    # Run twice (a retry, the sweeper): nothing moves again, no second set of outbox rows.
    assert move_selection_job(operation_id) == 0
    session.expire_all()
    assert _changes(session, operation_id) == rows
    assert (
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "device.move")
        )
        == 1
    )


def test_the_count_guard_and_the_target_rules_answer_at_accept_time(api, session):
    sales, ops = make_profile(session, name="Sales"), make_profile(session, name="Ops")
    bulk_devices(session, 2, sales)
    session.commit()
    body = {"filter": {"profile_id": sales.id}, "expected_count": 3, "profile_id": ops.id}
    r = api.post("/devices/move", body)
    assert r.status_code == 409 and r.get_json()["code"] == "count_mismatch"
    r = api.post("/devices/move", {**body, "expected_count": 2, "profile_id": sales.id})
    assert r.status_code == 422  # its own profile
    r = api.post("/devices/move", {**body, "filter": {"profile_id": ops.id}, "expected_count": 0})
    assert r.status_code == 422  # nothing matches
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Operation)) == 0


def test_a_move_refused_when_it_runs_fails_and_is_retried(api, session):
    sales, ops, other = (make_profile(session, name=n) for n in ("Sales", "Ops", "Other"))
    ids = bulk_devices(session, 2, sales)
    session.commit()
    operation_id = _accept(api, sales, ops, 2)
    # Someone moves them elsewhere before the job runs: nothing matches any more.
    device_services.move_devices(session, ids, other.id, "test")
    session.commit()
    assert move_selection_job(operation_id) is None
    session.expire_all()
    operation = session.get(Operation, operation_id)
    assert operation.status == "failed" and "Select at least one device" in operation.error
    assert _changes(session, operation_id) == 0

    device_services.move_devices(session, ids, sales.id, "test")
    session.commit()
    r = api.post(f"/operations/{operation_id}/retry")
    assert r.status_code == 202, r.get_json()
    assert move_selection_job(operation_id) == 2
    assert _profiles_of(session, ids) == {ops.id} and _changes(session, operation_id) >= 1


def test_the_sweeper_leaves_a_move_that_has_not_run_alone(api, session):
    sales, ops = make_profile(session, name="Sales"), make_profile(session, name="Ops")
    bulk_devices(session, 2, sales)
    session.commit()
    operation_id = _accept(api, sales, ops, 2)
    sweep_job()
    session.expire_all()
    assert session.get(Operation, operation_id).status == "queued"


def test_the_moved_devices_are_pushed_and_the_operation_ends_done(
    app, session, integration, sim, work
):
    start_pull(session, "test")
    session.commit()
    work()
    small = session.scalars(select(Upload).order_by(Upload.device_count)).first()
    approvals.approve_upload(session, small.id, "test")
    session.commit()
    work()
    sales = kme_profile(session, "Sales")
    session.commit()
    work()
    default = session.scalar(select(Device.profile_id).where(Device.upload_id == small.id).limit(1))
    n = small.device_count
    selection = DeviceSelection(default, all_matching=True)
    operation = device_services.move_selection(session, selection, sales.id, "test", n, later=True)
    session.commit()
    work()  # the move job, then the push it enqueues
    session.expire_all()
    operation = session.get(Operation, operation.id)
    assert operation.status == "done", operation.error
    assert operation.done == n == operation.total
    moved = session.scalars(select(Device).where(Device.upload_id == small.id)).all()
    assert {d.sync_state for d in moved} == {"synced"}
    assert {sim.device(d.kme_device_id)["profileId"] for d in moved[:5]} == {sales.kme_profile_id}
