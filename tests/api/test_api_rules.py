"""Routing rules as a script calls them: the list in order with the catch-all last, one rule
with its ETag, create / change / delete with the services' refusals naming the body's field,
If-Match and a stale order, the preview of a rule before it is saved, and Apply rules to
existing devices (its counts, then a 202 operation the worker carries to the simulator)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Approval, Device
from kmeweb.integration.models import Upload
from kmeweb.operations.models import Operation, OperationKind, OperationStatus
from kmeweb.outbox.models import SyncState
from kmeweb.profiles.models import ProfileKind
from kmeweb.rules.models import RoutingRule
from kmeweb.sync.jobs import start_pull
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_end_user,
    make_profile,
    make_reseller,
    make_upload,
)
from tests.sync_fixtures import with_sync_config

ACTOR = "admin-api@example.com (API token script)"
DEFAULT = "Samsung KME Default Profile"
CATCH_ALL = "Everything else"
IMEI = "356938035643809"


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def add_rule(api, name: str, conditions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    r = api.post("/rules", {"name": name, "conditions": conditions, **fields})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def names(api) -> list[str]:
    return [rule["name"] for rule in api.get("/rules").get_json()["items"]]


def test_the_list_has_the_rules_in_order_and_the_catch_all_last(api, session):
    acme = make_reseller(session, name="Acme Mobile")
    sales = make_profile(session, name="Sales")
    user = make_end_user(session)

    first = api.get("/rules")
    assert first.status_code == 200, first.get_data(as_text=True)
    (catch_all,) = first.get_json()["items"]
    assert first.get_json()["order"] == []
    assert catch_all["name"] == CATCH_ALL and catch_all["catch_all"] is True
    assert catch_all["position"] == 1 and catch_all["action"] == "hold"
    assert catch_all["profile_id"] is None and catch_all["destination"] == DEFAULT
    assert catch_all["summary"] == ["Every device no rule above matches"]

    r = api.post(
        "/rules",
        {
            "name": "Acme to sales",
            "conditions": {"reseller_ids": [acme.id], "order_patterns": ["PO-SALES-*"]},
            "action": "approve",
            "profile_id": sales.id,
            "end_user_id": user.id,
            "attributes": {"site": "Berlin"},
        },
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    made = r.get_json()
    assert r.headers["Location"] == made["url"] == f"/api/v1/rules/{made['id']}"
    assert r.headers["ETag"] == f'"{made["id"]}-1"'
    assert made["conditions"] == {
        "reseller_ids": [acme.id],
        "order_patterns": ["PO-SALES-*"],
        "model_patterns": [],
        "identifiers_count": 0,
        "identifiers": [],
        "imei_from": None,
        "imei_to": None,
    }
    assert made["summary"] == [
        "Reseller is Acme Mobile",
        "Order number matches PO-SALES-*",
    ]
    assert (made["action"], made["profile_id"], made["destination"]) == (
        "approve",
        sales.id,
        "Sales",
    )
    assert made["end_user_id"] == user.id and made["attributes"] == {"site": "Berlin"}
    assert made["broken"] is None and made["version"] == 1 and made["updated_by"] == ACTOR
    listed = add_rule(api, "Listed phones", {"identifiers": [IMEI, "R58N12ABCDE"]})

    body = api.get("/rules").get_json()
    assert [r["name"] for r in body["items"]] == ["Acme to sales", "Listed phones", CATCH_ALL]
    assert [r["position"] for r in body["items"]] == [1, 2, 3]
    assert body["order"] == [made["id"], listed["id"]]
    assert body["items"][1]["conditions"]["identifiers_count"] == 2
    assert "identifiers" not in body["items"][1]["conditions"]  # the list gives the count only

    one = api.get(f"/rules/{listed['id']}")
    assert one.status_code == 200 and one.headers["ETag"] == f'"{listed["id"]}-1"'
    assert one.get_json()["conditions"]["identifiers"] == [IMEI, "R58N12ABCDE"]
    assert one.get_json()["position"] == 2
    missing = api.get("/rules/999999")
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"

    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "rule.create"))
    assert event.actor == ACTOR and event.details["name"] == "Acme to sales"


@pytest.mark.parametrize(
    ("conditions", "fields", "field", "message"),
    [
        ({"order_patterns": ["PO[1]"]}, {}, "conditions.order_patterns", "is not a pattern"),
        ({"model_patterns": ["*"]}, {}, "conditions.model_patterns", "matches every model"),
        ({"reseller_ids": [999999]}, {}, "conditions.reseller_ids", "Unknown reseller: 999999"),
        (
            {"identifiers": [IMEI, "not an imei!"]},
            {},
            "conditions.identifiers",
            "Not an IMEI, MEID or serial number",
        ),
        (
            {"imei_from": "356938035643809", "imei_to": "356938035643000"},
            {},
            "conditions.imei_to",
            "The range ends before it starts.",
        ),
        ({"imei_from": "35693803564380"}, {}, "conditions.imei_from", "An IMEI has 15 digits."),
        ({}, {}, "conditions", "at least one condition"),
        ({"model_patterns": ["SM-T*"]}, {"name": "  "}, "name", "Enter a name."),
        (
            {"model_patterns": ["SM-T*"]},
            {"attributes": {"bad/name": "x"}},
            "attributes.bad/name",
            "A name",
        ),
    ],
)
def test_create_refuses_a_bad_value_naming_its_field(
    api, session, conditions, fields, field, message
):
    r = api.post("/rules", {"name": "Tablets", "conditions": conditions, **fields})
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json"
    errors = r.get_json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert message in errors[0]["message"]
    assert count_rows(session, RoutingRule, RoutingRule.catch_all.is_(False)) == 0


def test_several_refusals_come_together_and_a_profile_must_be_kme(api, session):
    own = make_profile(session, kind=ProfileKind.SELF_MAINTAINED, config={})
    add_rule(api, "Tablets", {"model_patterns": ["SM-T*"]})
    r = api.post(
        "/rules",
        {
            "name": "tablets",  # taken, whatever its case
            "conditions": {"order_patterns": ["PO%"], "imei_to": IMEI},
            "profile_id": own.id,
        },
    )
    assert r.status_code == 422
    assert {e["field"]: e["message"] for e in r.get_json()["errors"]} == {
        "name": "Another rule has this name.",
        "conditions.order_patterns": r.get_json()["errors"][1]["message"],
        "conditions.imei_from": "Enter both ends of the range, or neither.",
        "profile_id": "Choose a Samsung Knox Mobile Enrollment profile.",
    }
    user = make_end_user(session)
    r = api.post(
        "/rules",
        {"name": "U", "conditions": {"model_patterns": ["X*"]}, "end_user_id": user.id},
    )
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "end_user_id"
    schema = api.post("/rules", {"name": "X", "conditions": {"colour": ["red"]}})
    assert schema.status_code == 422
    assert schema.get_json()["errors"][0]["field"] == "conditions.colour"
    assert names(api) == ["Tablets", CATCH_ALL]


def test_patch_changes_what_is_sent_and_honours_if_match(api, session):
    sales = make_profile(session, name="Sales")
    rule = add_rule(
        api, "Tablets", {"model_patterns": ["SM-T*"], "order_patterns": ["PO-1*"]}, action="approve"
    )
    url = f"/rules/{rule['id']}"
    etag = api.get(url).headers["ETag"]

    stale = api.patch(url, {"name": "Theirs"}, headers={"If-Match": f'"{rule["id"]}-0"'})
    assert stale.status_code == 412 and stale.get_json()["code"] == "precondition_failed"
    assert "rule changed since you read it" in stale.get_json()["detail"]

    r = api.patch(
        url,
        {"name": "Tablets EU", "conditions": {"model_patterns": ["SM-X*"]}, "profile_id": sales.id},
        headers={"If-Match": etag},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["name"] == "Tablets EU" and body["version"] == 2
    assert body["conditions"]["model_patterns"] == ["SM-X*"]
    assert body["conditions"]["order_patterns"] == ["PO-1*"]  # not sent: kept
    assert body["action"] == "approve" and body["destination"] == "Sales"
    assert r.headers["ETag"] == f'"{rule["id"]}-2"' != etag
    again = api.patch(url, {"name": "Late"}, headers={"If-Match": etag})
    assert again.status_code == 412

    # null: back to the Default Profile; [] clears a condition.
    r = api.patch(url, {"profile_id": None, "conditions": {"order_patterns": []}})
    assert r.get_json()["profile_id"] is None and r.get_json()["destination"] == DEFAULT
    assert r.get_json()["conditions"]["order_patterns"] == []
    bad = api.patch(url, {"conditions": {"model_patterns": []}})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "conditions"

    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "rule.update").order_by(AuditEvent.id)
    ).first()
    assert event.actor == ACTOR and event.details["changed"]["name"] == ["Tablets", "Tablets EU"]
    assert api.patch("/rules/999999", {"name": "X"}).status_code == 404


def test_the_catch_all_takes_no_conditions_and_stays(api, session):
    catch_all = api.get("/rules").get_json()["items"][-1]
    url = f"/rules/{catch_all['id']}"
    r = api.patch(url, {"conditions": {"model_patterns": ["SM-T*"]}})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "conditions"
    r = api.patch(url, {"action": "approve", "name": "All the rest"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["action"] == "approve" and r.get_json()["catch_all"] is True
    r = api.delete(url)
    assert r.status_code == 409 and r.get_json()["code"] == "conflict"
    assert names(api) == ["All the rest"]


def test_a_rule_whose_profile_was_deleted_is_broken_until_given_one(api, session):
    doomed = make_profile(session, name="Doomed")
    rule = add_rule(api, "Tablets", {"model_patterns": ["SM-T*"]}, profile_id=doomed.id)
    session.delete(doomed)
    session.commit()

    shown = api.get(f"/rules/{rule['id']}").get_json()
    assert shown["profile_id"] is None and shown["destination"] == DEFAULT
    assert "points at a profile that was deleted" in shown["broken"]
    r = api.patch(f"/rules/{rule['id']}", {"name": "Tablets (fix me)"})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "profile_id"
    r = api.patch(f"/rules/{rule['id']}", {"name": "Tablets", "profile_id": None})
    assert r.status_code == 200 and r.get_json()["broken"] is None


def test_delete_honours_if_match(api, session):
    rule = add_rule(api, "Tablets", {"model_patterns": ["SM-T*"]})
    url = f"/rules/{rule['id']}"
    r = api.delete(url, headers={"If-Match": f'"{rule["id"]}-7"'})
    assert r.status_code == 412
    r = api.delete(url, headers={"If-Match": f'"{rule["id"]}-1"'})
    assert r.status_code == 204 and r.get_data() == b""
    assert api.get(url).status_code == 404 and api.delete(url).status_code == 404
    assert names(api) == [CATCH_ALL]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "rule.delete"))
    assert event.actor == ACTOR and event.details["name"] == "Tablets"


def test_reorder_refuses_a_stale_order_and_an_incomplete_one(api, session):
    a = add_rule(api, "A", {"model_patterns": ["A*"]})["id"]
    b = add_rule(api, "B", {"model_patterns": ["B*"]})["id"]
    c = add_rule(api, "C", {"model_patterns": ["C*"]})["id"]
    seen = api.get("/rules").get_json()["order"]
    assert seen == [a, b, c]

    r = api.put("/rules/order", {"order": [c, a, b], "expected_order": seen})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [x["name"] for x in r.get_json()["items"]] == ["C", "A", "B", CATCH_ALL]
    assert r.get_json()["order"] == [c, a, b]

    stale = api.put("/rules/order", {"order": [b, c, a], "expected_order": seen})
    assert stale.status_code == 409 and stale.get_json()["code"] == "conflict"
    assert stale.get_json()["errors"][0]["field"] == "expected_order"
    assert names(api) == ["C", "A", "B", CATCH_ALL]

    catch_all = api.get("/rules").get_json()["items"][-1]["id"]
    for order in ([a, b], [a, b, c, catch_all], [a, a, b, c]):
        r = api.put("/rules/order", {"order": order})
        assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "order"
    assert api.put("/rules/order", {"order": [a, b, c]}).status_code == 200
    assert names(api) == ["A", "B", "C", CATCH_ALL]
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "rule.order").order_by(AuditEvent.id)
    ).first()
    assert event.actor == ACTOR and event.details["order"] == ["C", "A", "B"]


@pytest.fixture
def tenant(session) -> dict[str, Any]:
    """An upload of Acme waiting for approval (3 phones), tablets approved in Sales (4) and in
    Warehouse (2)."""
    make_default_profile(session)
    acme = make_reseller(session, name="Acme Mobile")
    upload = make_upload(session, pending=3, reseller_id=acme.id, order_number="PO-SALES-7")
    sales = make_profile(session, name="Sales")
    warehouse = make_profile(session, name="Warehouse")
    tablets = bulk_devices(session, 4, sales, model="SM-T505")
    tablets += bulk_devices(session, 2, warehouse, model="SM-T505")
    return {"acme": acme, "upload": upload, "sales": sales, "warehouse": warehouse}


def test_preview_counts_what_a_rule_would_match_and_saves_nothing(api, session, tenant):
    warehouse = tenant["warehouse"]
    r = api.post(
        "/rules/preview",
        {
            "name": "Tablets",
            "conditions": {"model_patterns": ["sm-t*"]},
            "action": "approve",
            "profile_id": warehouse.id,
        },
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    tablets = session.scalars(
        select(Device.imei).where(Device.model == "SM-T505").order_by(Device.id)
    ).all()
    assert r.get_json() == {
        "rule": "Tablets",
        "pending": 0,
        "approved": 6,
        "total": 6,
        "destination": "Warehouse",
        "broken": None,
        "approves": True,
        "moves": [{"from_profile": "Sales", "devices": 4}],
        "moving": 4,
        "already_there": 2,
        "sample": list(tablets),
    }
    assert count_rows(session, RoutingRule, RoutingRule.catch_all.is_(False)) == 0

    acme = api.post(
        "/rules/preview",
        {"name": "Acme", "conditions": {"reseller_ids": [tenant["acme"].id]}},
    ).get_json()
    assert (acme["pending"], acme["approved"], acme["destination"]) == (3, 0, DEFAULT)
    assert acme["approves"] is False

    # A saved rule's edit, in its place: the rules above keep what they match.
    add_rule(api, "Tablets", {"model_patterns": ["SM-T*"]}, profile_id=warehouse.id)
    phones = add_rule(api, "Phones", {"order_patterns": ["PO-SALES-*"]})
    r = api.post(
        "/rules/preview",
        {"rule_id": phones["id"], "conditions": {"order_patterns": [], "model_patterns": ["SM-*"]}},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert (r.get_json()["rule"], r.get_json()["pending"], r.get_json()["approved"]) == (
        "Phones",
        3,
        0,
    )
    shown = api.get(f"/rules/{phones['id']}").get_json()
    assert shown["conditions"]["order_patterns"] == ["PO-SALES-*"] and shown["version"] == 1

    bad = api.post("/rules/preview", {"name": "X", "conditions": {"model_patterns": ["SM T?[]"]}})
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["field"] == "conditions.model_patterns"
    assert api.post("/rules/preview", {"rule_id": 999999}).status_code == 404


def test_the_apply_plan_then_202_with_an_operation_to_follow(api, session, tenant):
    rule = add_rule(
        api, "Tablets", {"model_patterns": ["SM-T*"]}, profile_id=tenant["warehouse"].id
    )
    r = api.get("/rules/apply")
    assert r.status_code == 200, r.get_data(as_text=True)
    plan = r.get_json()
    lines = {line["rule"]: line for line in plan["lines"]}
    assert list(lines) == ["Tablets", CATCH_ALL]
    assert lines["Tablets"] == {
        "rule_id": rule["id"],
        "rule": "Tablets",
        "destination": "Warehouse",
        "broken": None,
        "approve": 0,
        "hold": 0,
        "wait": 0,
        "move": 4,
        "stay": 2,
    }
    assert (lines[CATCH_ALL]["hold"], lines[CATCH_ALL]["approve"]) == (3, 0)
    assert plan["changes"] == 4

    stale = api.post("/rules/apply", {"expected_changes": 5})
    assert stale.status_code == 409 and stale.get_json()["code"] == "count_mismatch"
    assert "4 devices would change now, not 5" in stale.get_json()["detail"]
    assert count_rows(session, Operation) == 0
    missing = api.post("/rules/apply", {})
    assert missing.status_code == 422
    assert missing.get_json()["errors"][0]["field"] == "expected_changes"

    r = api.post("/rules/apply", {"expected_changes": 4})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert body["devices"] == 4 and r.headers["Location"] == body["operation_url"]
    operation = api.get(f"/operations/{body['operation_id']}").get_json()
    assert operation["kind"] == OperationKind.RULES_APPLY
    assert operation["status"] == OperationStatus.QUEUED and operation["total"] == 4
    running = api.post("/rules/apply", {"expected_changes": 4})
    assert running.status_code == 409 and "already being applied" in running.get_json()["detail"]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "rules.apply.start"))
    assert event.actor == ACTOR and event.details["devices"] == 4


def test_apply_approves_in_kme_through_the_worker(api, session, integration, sim, work):
    start_pull(session, "test")
    session.commit()
    work()
    small = session.scalars(select(Upload).order_by(Upload.device_count)).first()
    assert small.device_count == 250
    add_rule(api, "Small order", {"order_patterns": [small.order_number]}, action="approve")
    plan = api.get("/rules/apply").get_json()
    assert plan["changes"] == 250

    r = api.post("/rules/apply", {"expected_changes": 250})
    assert r.status_code == 202, r.get_data(as_text=True)
    work()
    operation = api.get(r.get_json()["operation_url"].removeprefix("/api/v1")).get_json()
    assert operation["status"] == OperationStatus.DONE, operation
    devices = session.scalars(select(Device).where(Device.upload_id == small.id)).all()
    assert {(d.approval, d.sync_state) for d in devices} == {(Approval.APPROVED, SyncState.SYNCED)}
    assert sim.device(devices[0].kme_device_id)["approved"] is True
    assert session.get(Operation, r.get_json()["operation_id"]).status == OperationStatus.DONE

    nothing = api.post("/rules/apply", {"expected_changes": 0})
    assert nothing.status_code == 409 and "would change nothing" in nothing.get_json()["detail"]


def test_writes_need_the_rules_write_scope(api, api_as, session):
    rule = add_rule(api, "Tablets", {"model_patterns": ["SM-T*"]})
    viewer = api_as(role="viewer")
    assert viewer.get("/rules").status_code == 200
    assert viewer.get(f"/rules/{rule['id']}").status_code == 200
    assert viewer.get("/rules/apply").status_code == 200
    preview = viewer.post("/rules/preview", {"name": "X", "conditions": {"model_patterns": ["A*"]}})
    assert preview.status_code == 200
    refused = [
        viewer.post("/rules", {"name": "Mine", "conditions": {"model_patterns": ["A*"]}}),
        viewer.patch(f"/rules/{rule['id']}", {"name": "Mine"}),
        viewer.delete(f"/rules/{rule['id']}"),
        viewer.put("/rules/order", {"order": [rule["id"]]}),
        viewer.post("/rules/apply", {"expected_changes": 0}),
    ]
    for r in refused:
        assert r.status_code == 403 and r.get_json()["code"] == "insufficient_scope"
        assert "rules:write" in r.get_json()["detail"]

    uploads = api_as(scopes=["kme.uploads:read", "kme.uploads:write"], email="uploads@example.com")
    assert uploads.get("/rules").status_code == 403
    made = uploads.post("/rules", {"name": "Mine", "conditions": {"model_patterns": ["A*"]}})
    assert made.status_code == 403
    assert names(api) == ["Tablets", CATCH_ALL]
