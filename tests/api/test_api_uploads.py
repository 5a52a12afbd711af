"""Uploads and resellers as a script calls them: lists by cursor, one upload and its pending
devices, Approve All Devices through the real worker and simulator, resellers with the routing
rules that name them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Approval, Device
from kmeweb.integration.models import Upload
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.outbox.models import ChangeKind, SyncState
from kmeweb.sync.jobs import start_pull
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_profile,
    make_reseller,
    make_upload,
)
from tests.sync_fixtures import with_sync_config

ACTOR = "admin-api@example.com (API token script)"


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def test_uploads_list_newest_first_with_pending_counts_and_cursor(api, session):
    acme = make_reseller(session, name="Acme Mobile")
    old = make_upload(session, pending=3, reseller_id=acme.id, order_number="PO-OLD")
    new = make_upload(session, pending=2)
    bulk_devices(session, 4, make_profile(session), upload_id=old.id)  # approved already

    r = api.get("/uploads")
    assert r.status_code == 200, r.get_data(as_text=True)
    items = r.get_json()["items"]
    assert [u["id"] for u in items] == [new.id, old.id]
    assert items[1] == {
        "id": old.id,
        "kme_upload_id": old.kme_upload_id,
        "reseller_id": acme.id,
        "reseller": "Acme Mobile",
        "order_number": "PO-OLD",
        "uploaded_at": None,
        "devices": 3,
        "pending": 3,
        "status": "pending",
    }
    assert items[0]["pending"] == 2

    first = api.get("/uploads?limit=1").get_json()
    assert [u["id"] for u in first["items"]] == [new.id] and first["next_cursor"]
    second = api.get(f"/uploads?limit=1&cursor={first['next_cursor']}").get_json()
    assert [u["id"] for u in second["items"]] == [old.id] and second["next_cursor"] is None

    found = api.get("/uploads?q=acme").get_json()["items"]
    assert [u["id"] for u in found] == [old.id]
    assert api.get("/uploads?cursor=nonsense").status_code == 422


def test_one_upload_and_its_pending_devices(api, session):
    reseller = make_reseller(session, name="Acme Mobile")
    upload = make_upload(session, pending=3, reseller_id=reseller.id)
    bulk_devices(session, 2, make_profile(session), upload_id=upload.id)  # approved: not listed

    r = api.get(f"/uploads/{upload.id}")
    assert r.status_code == 200
    body = r.get_json()
    assert body["pending"] == 3 and body["reseller"] == "Acme Mobile"
    assert body["approval_profile"] == "Samsung KME Default Profile"
    assert body["approval_operation"] is None

    pending = session.scalars(
        select(Device)
        .where(Device.upload_id == upload.id, Device.approval == Approval.PENDING)
        .order_by(Device.id)
    ).all()
    page = api.get(f"/uploads/{upload.id}/devices?limit=2").get_json()
    assert [d["id"] for d in page["items"]] == [d.id for d in pending[:2]]
    assert page["items"][0]["imei"] == pending[0].imei
    rest = api.get(f"/uploads/{upload.id}/devices?limit=2&cursor={page['next_cursor']}")
    assert [d["id"] for d in rest.get_json()["items"]] == [pending[2].id]
    hit = api.get(f"/uploads/{upload.id}/devices?q={pending[1].imei[-6:]}").get_json()["items"]
    assert [d["id"] for d in hit] == [pending[1].id]

    assert api.get("/uploads/999999").status_code == 404
    missing = api.get("/uploads/999999/devices")
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"


def test_approve_answers_202_and_the_worker_approves_in_kme(api, session, integration, sim, work):
    start_pull(session, "test")
    session.commit()
    work()
    small = session.scalars(select(Upload).order_by(Upload.device_count)).first()
    assert small.device_count == 250

    r = api.post(f"/uploads/{small.id}/approve", {"expected_pending": 250})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert body["devices"] == 250
    assert r.headers["Location"] == body["operation_url"]
    assert body["operation_url"] == f"/api/v1/operations/{body['operation_id']}"
    again = api.post(f"/uploads/{small.id}/approve", {})
    assert again.status_code == 409 and "already being approved" in again.get_json()["detail"]

    work()
    operation = session.get(Operation, body["operation_id"])
    assert operation.kind == ChangeKind.UPLOAD_APPROVE
    assert operation.status == OperationStatus.DONE
    devices = session.scalars(select(Device).where(Device.upload_id == small.id)).all()
    assert {(d.approval, d.sync_state) for d in devices} == {(Approval.APPROVED, SyncState.SYNCED)}
    assert sim.device(devices[0].kme_device_id)["approved"] is True
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "upload.approve"))
    assert event.actor == ACTOR and event.details["devices"] == 250
    shown = api.get(f"/uploads/{small.id}").get_json()
    assert shown["pending"] == 0 and shown["approval_operation"]["status"] == "done"


def test_approve_refuses_a_stale_count_and_writes_nothing(api, session):
    make_default_profile(session)
    upload = make_upload(session, pending=10)
    bulk_devices(session, 5, None, approval="pending", upload_id=upload.id)  # a pull added 5

    r = api.post(f"/uploads/{upload.id}/approve", {"expected_pending": 10})
    assert r.status_code == 409
    assert "15 devices are waiting now, not 10" in r.get_json()["detail"]
    assert count_rows(session, Operation) == 0
    assert api.post("/uploads/999999/approve").status_code == 404
    bad = api.post(f"/uploads/{upload.id}/approve", {"expected_pending": -1})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "expected_pending"


def test_resellers_list_and_one_show_the_rules_naming_them(api, session):
    make_default_profile(session)
    acme = make_reseller(session, name="Acme Mobile")
    zeta = make_reseller(session, name="Zeta Phones")

    def add_rule(name: str, conditions: dict) -> int:
        r = api.post("/rules", {"name": name, "conditions": conditions})
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.get_json()["id"]

    sales = add_rule("Acme sales", {"reseller_ids": [acme.id], "order_patterns": ["PO-S*"]})
    tablets = add_rule("Tablets", {"model_patterns": ["SM-T*"]})
    both = add_rule("Acme or Zeta", {"reseller_ids": [zeta.id, acme.id]})

    items = api.get("/resellers").get_json()["items"]
    assert [r["id"] for r in items] == [acme.id, zeta.id]
    assert items[0] == {
        "id": acme.id,
        "kme_reseller_id": acme.kme_reseller_id,
        "name": "Acme Mobile",
        "rule_ids": [sales, both],  # in the order the rules are tried
    }
    assert items[1]["rule_ids"] == [both]
    assert [r["id"] for r in api.get("/resellers?q=zeta").get_json()["items"]] == [zeta.id]
    page = api.get("/resellers?limit=1").get_json()
    assert page["next_cursor"] and len(page["items"]) == 1

    order = api.put("/rules/order", {"order": [both, tablets, sales]})
    assert order.status_code == 200, order.get_data(as_text=True)
    assert api.get(f"/resellers/{acme.id}").get_json()["rule_ids"] == [both, sales]
    assert api.get("/resellers/999999").status_code == 404


def test_reseller_preferences_are_routing_rules_now(api, session):
    """PATCH /resellers is gone: what it set (auto-approve, a default profile) is a rule."""
    reseller = make_reseller(session)
    r = api.patch(f"/resellers/{reseller.id}", {"auto_approve": True})
    assert r.status_code == 405 and r.get_json()["code"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]


def test_write_routes_need_the_uploads_write_scope(api_as, session):
    make_default_profile(session)
    upload = make_upload(session, pending=2)
    reader = api_as(scopes=["kme.uploads:read"])
    assert reader.get(f"/uploads/{upload.id}").status_code == 200
    assert reader.get("/resellers").status_code == 200

    approve = reader.post(f"/uploads/{upload.id}/approve", {"expected_pending": 2})
    assert approve.status_code == 403 and approve.get_json()["code"] == "insufficient_scope"
    assert "kme.uploads:write" in approve.get_json()["detail"]
    assert count_rows(session, Operation) == 0
    pending = count_rows(
        session, Device, Device.upload_id == upload.id, Device.approval == Approval.PENDING
    )
    assert pending == 2
