"""/api/v1/devices and a Self-Maintained profile's imports, as a script calls them: search
across profiles paged by cursor, the bulk actions on explicit ids or on a filter with the count
the script expects (409 when it differs, nothing written), dry runs, Idempotency-Key, the
import preview and confirm, and the scope every write needs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
    make_upload,
)

IMEI = "356938035643809"  # a valid IMEI (Luhn)
IMEI_BAD_LUHN = "356938035643800"
READ_ONLY = ["kme.devices:read"]


def _written(session) -> tuple[int, int, int]:
    """(operations, outbox changes, audit events): what a refused or dry request leaves."""
    session.expire_all()
    return (
        count_rows(session, Operation),
        count_rows(session, Change),
        count_rows(session, AuditEvent),
    )


def _profiles_of(session, ids: list[int]) -> set[int | None]:
    session.expire_all()
    return set(session.scalars(select(Device.profile_id).where(Device.id.in_(ids))))


@pytest.fixture
def fleet(session):
    """Two KME profiles with a few devices of every kind a search tells apart."""
    sales = make_profile(session, name="Sales")
    ops = make_profile(session, name="Ops")
    jane = make_end_user(session, username="jane.doe")
    upload = make_upload(session)
    found = make_device(
        session,
        sales,
        imei=IMEI,
        serial="R58M12ABCDE",
        end_user_id=jane.id,
        attributes={"dept": "Finance", "floor": 3},
        upload_id=upload.id,
        registered_at=datetime(2026, 1, 2, 9, 30, tzinfo=UTC),
    )
    others = bulk_devices(session, 2, sales, model="SM-X200")
    failed = make_device(session, ops, sync_state="error", sync_error="KME said no")
    pending = make_device(session, None)
    return {
        "sales": sales,
        "ops": ops,
        "jane": jane,
        "upload": upload,
        "found": found,
        "others": others,
        "failed": failed,
        "pending": pending,
    }


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["id"] for item in response.get_json()["items"]]


def test_search_by_imei_profile_registration_sync_user_and_attribute(api, fleet):
    found = fleet["found"]
    r = api.get(f"/devices?imei={IMEI}")
    assert _ids(r) == [found.id]
    item = r.get_json()["items"][0]
    assert item["serial"] == "R58M12ABCDE"
    assert (item["profile_id"], item["profile_name"]) == (fleet["sales"].id, "Sales")
    assert (item["end_user_id"], item["end_user"]) == (fleet["jane"].id, "jane.doe")
    assert item["attributes"] == {"dept": "Finance", "floor": 3}
    assert item["approval"] == "approved" and item["sync_state"] == "synced"
    assert item["registered_at"].startswith("2026-01-02T")
    assert item["upload_id"] == fleet["upload"].id
    assert item["reseller_id"] == fleet["upload"].reseller_id and item["reseller_name"]
    assert item["url"] == f"/api/v1/devices/{found.id}"
    assert api.get(f"/devices/{found.id}").get_json() == item

    sales = fleet["sales"].id
    assert _ids(api.get(f"/devices?profile_id={sales}")) == [found.id, *fleet["others"]]
    assert _ids(api.get(f"/devices?profile_id={sales}&registration=registered")) == [found.id]
    assert _ids(api.get(f"/devices?profile_id={sales}&registration=pending")) == fleet["others"]
    assert _ids(api.get("/devices?sync=error")) == [fleet["failed"].id]
    assert _ids(api.get("/devices?attribute=dept=Finance")) == [found.id]
    assert _ids(api.get("/devices?attribute=floor=3")) == [found.id]
    assert _ids(api.get("/devices?attribute=dept=Sales")) == []
    assert _ids(api.get("/devices?user=JANE.DOE")) == [found.id]
    assert _ids(api.get("/devices?q=jane")) == [found.id]  # the page's search: usernames too
    assert _ids(api.get("/devices?q=x200")) == fleet["others"]
    assert _ids(api.get("/devices?model=sm-x200&profile_id=" + str(fleet["ops"].id))) == []
    # Devices waiting for approval are found too, without a profile.
    pending = api.get(f"/devices?imei={fleet['pending'].imei}").get_json()["items"][0]
    assert pending["profile_id"] is None and pending["approval"] == "pending"


def test_paging_by_cursor_returns_every_device_once(api, session):
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 5, sales) + bulk_devices(session, 2, make_profile(session))
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        r = api.get("/devices?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        seen += _ids(r)
        pages += 1
        cursor = r.get_json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == ids
    first = api.get(f"/devices?limit=3&profile_id={sales.id}").get_json()
    rest = api.get(f"/devices?limit=3&profile_id={sales.id}&cursor={first['next_cursor']}")
    assert [d["id"] for d in first["items"]] + _ids(rest) == ids[:5]
    assert rest.get_json()["next_cursor"] is None


def test_an_invalid_cursor_or_filter_is_422_and_a_missing_device_404(api):
    r = api.get("/devices?cursor=not-ours")
    assert r.status_code == 422 and r.get_json()["code"] == "invalid_cursor"
    r = api.get("/devices?sync=syncing")
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "sync"
    assert api.get("/devices?limit=1001").status_code == 422
    r = api.get("/devices/999999")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"


def test_move_by_ids_queues_an_operation_with_its_outbox_rows_audited_as_the_token(
    api, session, fleet
):
    ids = [fleet["found"].id, fleet["failed"].id]  # two profiles: explicit ids may span them
    target = make_profile(session, name="Field")
    r = api.post("/devices/move", {"device_ids": ids, "profile_id": target.id})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert body["devices"] == 2 and r.headers["Location"] == body["operation_url"]
    assert body["operation_url"] == f"/api/v1/operations/{body['operation_id']}"
    operation = session.get(Operation, body["operation_id"])
    assert operation.kind == "device.move" and operation.total == 2
    changes = session.scalars(select(Change).where(Change.operation_id == operation.id)).all()
    assert changes and {c.kind for c in changes} == {"device.move"}
    assert _profiles_of(session, ids) == {target.id}
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.move"))
    assert "(API token script)" in event.actor
    assert api.get(body["operation_url"].removeprefix("/api/v1")).get_json()["status"] == "queued"


def test_move_by_filter_needs_the_expected_count(api, session, fleet):
    sales, target = fleet["sales"], fleet["ops"]
    others = fleet["others"]
    selection = {"filter": {"profile_id": sales.id, "q": "x200", "registration": "", "sync": ""}}
    before = _written(session)
    r = api.post("/devices/move", {**selection, "expected_count": 3, "profile_id": target.id})
    assert r.status_code == 409
    problem = r.get_json()
    assert problem["code"] == "count_mismatch" and "2 devices match now" in problem["detail"]
    assert problem["errors"] == [{"field": "expected_count", "message": problem["detail"]}]
    assert _written(session) == before and _profiles_of(session, others) == {sales.id}

    r = api.post("/devices/move", {**selection, "profile_id": target.id})
    assert r.status_code == 422  # a filter without expected_count
    r = api.post("/devices/move", {**selection, "expected_count": 2, "profile_id": target.id})
    assert r.status_code == 202 and r.get_json()["devices"] == 2
    # A filter is accepted at once; its operation's job moves the devices (test_api_move_job).
    operation = session.get(Operation, r.get_json()["operation_id"])
    assert operation.status == "queued" and operation.total == 2
    assert _profiles_of(session, others) == {sales.id}


def test_dry_run_counts_checks_and_writes_nothing(api, session, fleet):
    sales, target = fleet["sales"], fleet["ops"]
    before = _written(session)
    body = {"filter": {"profile_id": sales.id}, "expected_count": 3, "profile_id": target.id}
    r = api.post("/devices/move?dry_run=true", body)
    assert r.status_code == 200 and r.get_json() == {"dry_run": True, "devices": 3}
    r = api.post("/devices/move?dry_run=true", {**body, "expected_count": 4})
    assert r.status_code == 409 and r.get_json()["code"] == "count_mismatch"
    # The action's own rules run too: Remove refuses Knox devices in a dry run as for real.
    r = api.post("/devices/remove?dry_run=true", {"device_ids": [fleet["found"].id]})
    assert r.status_code == 409
    assert _written(session) == before
    assert _profiles_of(session, [fleet["found"].id, *fleet["others"]]) == {sales.id}


def test_idempotency_key_replays_the_first_operation(api, session, fleet):
    target = fleet["ops"]
    body = {"device_ids": fleet["others"], "profile_id": target.id}
    key = {"Idempotency-Key": "move-x200-1"}
    first = api.post("/devices/move", body, headers=key)
    again = api.post("/devices/move", body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["operation_id"] == first.get_json()["operation_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_rows(session, Operation) == 1
    other = api.post("/devices/move", {**body, "device_ids": [fleet["found"].id]}, headers=key)
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"
    assert count_rows(session, Operation) == 1


def test_unassign_sends_devices_back_to_the_default_profile(api, session, fleet):
    default = make_default_profile(session)
    sales = fleet["sales"]
    body = {"filter": {"profile_id": sales.id, "registration": "pending"}, "expected_count": 2}
    r = api.post("/devices/unassign", body)
    assert r.status_code == 202, r.get_data(as_text=True)
    assert session.get(Operation, r.get_json()["operation_id"]).kind == "device.unassign"
    assert _profiles_of(session, fleet["others"]) == {default.id}


def test_delete_from_the_default_profile_only(api, session, fleet):
    default = make_default_profile(session)
    gone = bulk_devices(session, 2, default)
    kept = fleet["found"].id
    before = _written(session)
    r = api.post("/devices/delete", {"device_ids": [gone[0], kept]})
    assert r.status_code == 409, r.get_data(as_text=True)
    assert (
        "1 of the selected devices are not in the Samsung KME Default Profile"
        in (r.get_json()["detail"])
    )
    r = api.post(
        "/devices/delete", {"filter": {"profile_id": fleet["sales"].id}, "expected_count": 3}
    )
    assert r.status_code == 409 and "unassign first" in r.get_json()["detail"]
    assert _written(session) == before and count_rows(session, Device, Device.id == kept) == 1

    r = api.post("/devices/delete", {"device_ids": gone})
    assert r.status_code == 202, r.get_data(as_text=True)
    assert session.get(Operation, r.get_json()["operation_id"]).kind == "device.delete"
    assert count_rows(session, Device, Device.id.in_(gone)) == 0


def test_attributes_are_set_and_removed(api, session, fleet):
    found = fleet["found"]
    body = {"device_ids": [found.id, *fleet["others"]], "changes": {"dept": "Ops", "floor": None}}
    r = api.post("/devices/attributes", body)
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.get_json() == {"operation_id": None, "operation_url": None, "devices": 3}
    assert "Location" not in r.headers
    session.expire_all()
    assert session.get(Device, found.id).attributes == {"dept": "Ops"}
    assert session.get(Device, fleet["others"][0]).attributes == {"dept": "Ops"}
    r = api.post("/devices/attributes", {"device_ids": [found.id], "changes": {"bad/name": "x"}})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "changes.bad/name"


def test_user_is_set_and_cleared(api, session, fleet):
    john = make_end_user(session, username="john")
    ids = fleet["others"]
    r = api.post("/devices/user", {"device_ids": ids, "end_user_id": john.id, "password": "pin-1"})
    assert r.status_code == 202, r.get_data(as_text=True)
    assert session.get(Operation, r.get_json()["operation_id"]).kind == "device.user"
    session.expire_all()
    assert {session.get(Device, i).end_user_id for i in ids} == {john.id}
    assert "pin-1" not in str(session.scalars(select(AuditEvent.details)).all())
    r = api.post("/devices/user", {"device_ids": ids, "end_user_id": None})
    assert r.status_code == 202
    session.expire_all()
    assert {session.get(Device, i).end_user_id for i in ids} == {None}


def test_remove_takes_self_maintained_devices_only(api, session, fleet):
    shelf = make_profile(session, name="Shelf", kind="self_maintained", config={})
    ids = bulk_devices(session, 3, shelf)
    r = api.post("/devices/remove", {"device_ids": [ids[0], fleet["found"].id]})
    assert r.status_code == 409 and count_rows(session, Device, Device.id.in_(ids)) == 3
    r = api.post("/devices/remove", {"filter": {"profile_id": shelf.id}, "expected_count": 2})
    assert r.status_code == 409 and r.get_json()["code"] == "count_mismatch"
    r = api.post("/devices/remove", {"filter": {"profile_id": shelf.id}, "expected_count": 3})
    assert r.status_code == 202 and r.get_json()["devices"] == 3
    assert count_rows(session, Device, Device.id.in_(ids)) == 0
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.remove"))
    assert event.details["devices"] == 3 and "(API token script)" in event.actor


@pytest.fixture
def shelf(session):
    return make_profile(session, name="Warehouse", kind="self_maintained", config={})


def test_import_preview_shows_each_row_error_and_cannot_be_confirmed(api, session, shelf):
    text = f"imei,serial\n{IMEI},\n{IMEI_BAD_LUHN},\n"
    r = api.post(f"/profiles/{shelf.id}/imports", {"csv": text})
    assert r.status_code == 200, r.get_data(as_text=True)
    preview = r.get_json()
    assert preview["can_confirm"] is False and preview["confirm_url"] is None
    assert preview["rows"] == 2 and preview["error_count"] == 1
    (error,) = preview["errors"]
    assert (error["row"], error["column"], error["value"]) == (3, "imei", IMEI_BAD_LUHN)
    assert "Luhn" in error["reason"]
    r = api.post(f"/profiles/{shelf.id}/imports/{preview['preview_id']}/confirm")
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.get_json()["code"] == "invalid_csv"
    assert r.get_json()["errors"][1]["field"] == "csv.rows.3.imei"
    assert count_rows(session, Operation) == 0 and count_rows(session, Device) == 0
    # A file that cannot be read at all: 422 with the header's problem; a Knox profile: 409.
    r = api.post(f"/profiles/{shelf.id}/imports", {"csv": "imie,serial\n"})
    assert r.status_code == 422 and r.get_json()["code"] == "invalid_csv"
    assert r.get_json()["errors"][1]["field"].startswith("csv.rows.1")
    kme = make_profile(session)
    assert api.post(f"/profiles/{kme.id}/imports", {"csv": text}).status_code == 409


@pytest.fixture
def tiny_csv_limit(app_config: dict) -> dict:
    # Set before the app is made (the fixture is asked for ahead of `api`).
    app_config.update({"CSV_MAX_BYTES": 64, "MAX_CONTENT_LENGTH": 1024})
    return app_config


def test_import_too_large_is_413(tiny_csv_limit, api, shelf):
    r = api.post(f"/profiles/{shelf.id}/imports", {"csv": "imei\n" + f"{IMEI}\n" * 10})
    assert r.status_code == 413 and r.get_json()["code"] == "too_large"
    # A body past the request limit is refused before it is read.
    r = api.post(f"/profiles/{shelf.id}/imports", {"csv": "imei\n" + f"{IMEI}\n" * 100})
    assert r.status_code == 413 and r.get_json()["code"] == "too_large"


def test_import_confirm_runs_and_the_devices_appear(api, session, shelf, work):
    make_end_user(session, username="jane.doe")
    text = f"imei,serial,username\n{IMEI},,jane.doe\n,R58N99XYZ01,\n"
    preview = api.post(f"/profiles/{shelf.id}/imports", {"csv": text}).get_json()
    assert preview["can_confirm"] and preview["counts"]["new"] == 2
    r = api.post(preview["confirm_url"].removeprefix("/api/v1"))
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.headers["Location"] == r.get_json()["operation_url"]
    work()
    operation = session.get(Operation, r.get_json()["operation_id"])
    assert (operation.kind, operation.status, operation.done) == ("device.import", "done", 2)
    found = api.get(f"/devices?profile_id={shelf.id}").get_json()["items"]
    assert {(d["imei"], d["serial"], d["end_user"]) for d in found} == {
        (IMEI, None, "jane.doe"),
        (None, "R58N99XYZ01", None),
    }
    actors = session.scalars(
        select(AuditEvent.actor).where(AuditEvent.action.like("device.import%"))
    ).all()
    assert len(actors) == 2 and all("(API token script)" in a for a in actors)


WRITES = [
    "/devices/move",
    "/devices/unassign",
    "/devices/delete",
    "/devices/attributes",
    "/devices/user",
    "/devices/remove",
    "/profiles/1/imports",
    "/profiles/1/imports/abc/confirm",
]


@pytest.mark.parametrize("path", WRITES)
def test_each_write_needs_devices_write(api_as, path):
    reader = api_as(scopes=READ_ONLY)
    assert reader.get("/devices").status_code == 200
    r = reader.post(path, {"device_ids": [1], "profile_id": 1, "csv": "imei\n"})
    assert r.status_code == 403 and r.get_json()["code"] == "insufficient_scope"


def test_a_devices_history_reads_as_its_page_newest_first_and_pages(api, session, fleet):
    """A service desk's script asks why a device is where it is: the moves the API made come
    back, newest first, in the device page's words, paged by `older`."""
    device_id = fleet["found"].id
    sales, ops = fleet["sales"], fleet["ops"]
    for target in (ops, sales):
        r = api.post("/devices/move", {"device_ids": [device_id], "profile_id": target.id})
        assert r.status_code == 202, r.get_data(as_text=True)
    r = api.get(f"/devices/{device_id}/history?limit=1")
    assert r.status_code == 200, r.get_data(as_text=True)
    page = r.get_json()
    assert [(e["what"], e["detail"]) for e in page["items"]] == [("Moved", "Ops → Sales")]
    assert page["items"][0]["who"] == "admin-api@example.com (API token script)"
    r = api.get(f"/devices/{device_id}/history?limit=1&before={page['older']}")
    assert [e["detail"] for e in r.get_json()["items"]] == ["Sales → Ops"]
    assert api.get("/devices/999999/history").status_code == 404
