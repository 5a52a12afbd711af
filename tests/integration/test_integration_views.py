"""The Knox Integration pages: Settings, Test connection, Activate, Sync now, Uploads, View,
Approve All Devices, CSV downloads and Resellers, as plain requests and as htmx."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from kmeweb import crypto
from kmeweb.devices.models import Device
from kmeweb.integration import approvals, routing, uploads
from kmeweb.integration.models import Integration, Reseller, Upload, get_integration
from kmeweb.operations.models import Operation
from kmeweb.profiles.models import Profile
from kmeweb.rules import services as rules
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_profile,
    make_reseller,
    make_upload,
)

SIM_FORM = {
    "name": "Knox EU",
    "description": "Production tenant",
    "auth_mode": "oauth",
    "region": "custom",
    "sync_interval_min": "15",
}


def sim_form(sim, **over) -> dict:
    return {
        **SIM_FORM,
        "base_url": sim.url,
        "token_url": sim.url + "/ams/v1/oauth2/token",
        "client_id": sim.creds["oauth_client_id"],
        "client_secret": sim.creds["oauth_client_secret"],
        "customer_id": sim.creds["customer_id"],
        **over,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text(response) -> str:
    return response.get_data(as_text=True)


# --- Settings --------------------------------------------------------------------------------


def test_settings_page_never_renders_the_secret(client, login, session, integration, sim):
    login()
    page = text(client.get("/integration/"))
    assert 'value="Demo KME"' in page
    assert sim.creds["oauth_client_secret"] not in page
    assert "A secret is saved; leave blank to keep it." in page
    assert "Knox Integration" in page and "Samsung KME Default Profile" not in page


def test_save_settings_keeps_the_secret_when_left_blank(client, login, actions, session, sim):
    login()
    response = actions.post("/integration/settings", sim_form(sim))
    assert response.status_code == 303
    integration = get_integration(session)
    assert crypto.decrypt(integration.secret_enc) == sim.creds["oauth_client_secret"]
    assert integration.sync_interval_s == 900 and integration.active is False

    response = actions.post(
        "/integration/settings", sim_form(sim, client_secret="", name="Knox EU 2")
    )
    assert response.status_code == 303
    session.expire_all()
    assert integration.name == "Knox EU 2"
    assert crypto.decrypt(integration.secret_enc) == sim.creds["oauth_client_secret"]
    assert "Knox EU 2" in text(client.get("/integration/"))


@pytest.mark.parametrize(
    ("over", "field_id", "message"),
    [
        ({"name": ""}, "name", "Enter the Integration Name."),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
        ({"description": "d" * 201}, "description", "at most 200 characters"),
        ({"sync_interval_min": "4"}, "sync_interval_min", "5 to 1440 minutes"),
        ({"sync_interval_min": "often"}, "sync_interval_min", "whole minutes"),
        ({"region": "custom", "base_url": ""}, "base_url", "Enter the Knox API URL."),
        ({"client_secret": ""}, "client_secret", "Enter the client secret."),
    ],
)
def test_bad_settings_show_next_to_the_field_and_write_nothing(
    client, login, actions, session, sim, over, field_id, message
):
    login()
    form = sim_form(sim, **over)
    response = actions.post("/integration/settings", form)
    assert response.status_code == 422
    page = text(response)
    error = page.split(f'id="{field_id}-error"', 1)[1].split("</p>", 1)[0]
    assert message in error
    assert 'value="Knox EU"' in page or over.get("name") is not None  # typed values kept
    assert count_rows(session, Integration) == 0


def test_bad_settings_over_htmx_get_the_form_alone(client, login, actions, session, sim):
    login()
    token = actions.token("/integration/")
    response = client.post(
        "/integration/settings",
        data={**sim_form(sim, sync_interval_min="2"), "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    page = text(response)
    assert page.lstrip().startswith("<form") and "<html" not in page
    assert 'value="2"' in page and "5 to 1440 minutes" in page


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (b"not json at all", "keys.json is not valid JSON"),
        (json.dumps({"Public": "abc"}).encode(), "keys.json lacks Private"),
    ],
)
def test_bad_keys_json_is_refused_next_to_the_file(
    client, login, actions, session, sim, keys, message
):
    login()
    data = sim_form(sim, auth_mode="legacy", client_secret="")
    data["keys_file"] = (io.BytesIO(keys), "keys.json")
    response = actions.post("/integration/settings", data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert message in text(response).split('id="keys_file-error"', 1)[1].split("</p>", 1)[0]
    assert count_rows(session, Integration) == 0


def test_legacy_keys_json_upload_reads_the_identifier_from_the_file(
    client, login, actions, session, sim
):
    login()
    keys = json.dumps(sim.creds["legacy_keys_json"]).encode()
    data = sim_form(sim, auth_mode="legacy", client_secret="", client_id="")
    data["keys_file"] = (io.BytesIO(keys), "keys.json")
    response = actions.post("/integration/test", data, content_type="multipart/form-data")
    assert response.status_code == 200, text(response)
    assert "Connected to Samsung Knox" in text(response)

    data["keys_file"] = (io.BytesIO(keys), "keys.json")
    response = actions.post("/integration/settings", data, content_type="multipart/form-data")
    assert response.status_code == 303, text(response)
    integration = get_integration(session)
    assert integration.auth_mode == "legacy"
    assert json.loads(crypto.decrypt(integration.secret_enc))["Private"]
    assert sim.creds["legacy_keys_json"]["Private"] not in text(client.get("/integration/"))


# --- Test connection -------------------------------------------------------------------------


def test_test_connection_answers_in_place_with_the_device_count(
    client, login, actions, session, sim
):
    login()
    token = actions.token("/integration/")
    response = client.post(
        "/integration/test",
        data={**sim_form(sim), "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    fragment = text(response)
    assert "<form" not in fragment
    assert "Connected to Samsung Knox: the tenant holds 1,450 devices." in fragment
    assert count_rows(session, Integration) == 0  # testing saves nothing


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"client_secret": "wrong"}, "Samsung refused the credentials: they are wrong or expired"),
        ({"customer_id": "NOSUCHCUSTOMER"}, "Samsung does not know customer id NOSUCHCUSTOMER"),
    ],
)
def test_test_connection_says_why_it_failed(client, login, actions, session, sim, over, reason):
    login()
    response = actions.post("/integration/test", sim_form(sim, **over))
    assert response.status_code == 200
    page = text(response)
    assert reason in page
    assert "Traceback" not in page and "wrong" not in page.split(reason)[1][:200]


def test_test_connection_to_an_unreachable_host(client, login, actions, session, sim):
    login()
    dead = f"http://127.0.0.1:{free_port()}"
    response = actions.post(
        "/integration/test", sim_form(sim, base_url=dead, token_url=dead + "/token")
    )
    assert "Samsung is unreachable" in text(response)


def test_test_connection_with_a_keys_json_whose_key_is_not_a_key(
    client, login, actions, session, sim
):
    login()
    data = sim_form(sim, auth_mode="legacy", client_secret="", client_id="")
    keys = {"Public": "bm90IGEga2V5", "Private": "bm90IGEga2V5", "Identifier": "abc"}
    data["keys_file"] = (io.BytesIO(json.dumps(keys).encode()), "keys.json")
    response = actions.post("/integration/test", data, content_type="multipart/form-data")
    page = text(response)
    assert "keys.json is malformed" in page
    assert "bm90IGEga2V5" not in page


# --- Activate, Deactivate, Sync now ----------------------------------------------------------


def test_activate_refused_by_kme_changes_nothing(client, login, actions, session, sim):
    login()
    response = actions.post("/integration/activate", sim_form(sim, client_secret="wrong"))
    assert response.status_code == 422
    page = text(response)
    assert "Not activated: Samsung refused the credentials" in page
    assert 'value="Knox EU"' in page
    assert count_rows(session, Integration) == 0
    assert count_rows(session, Profile) == 0
    assert count_rows(session, Operation) == 0


def test_activate_creates_the_default_profile_once_and_starts_a_pull(
    client, login, actions, session, sim
):
    login()
    response = actions.post("/integration/activate", sim_form(sim))
    assert response.status_code == 303
    integration = get_integration(session)
    assert integration.active and integration.activated_at is not None
    defaults = session.scalars(select(Profile).where(Profile.kind == "kme_default")).all()
    assert [p.name for p in defaults] == ["Samsung KME Default Profile"]
    pulls = session.scalars(select(Operation).where(Operation.kind == "pull")).all()
    assert len(pulls) == 1 and pulls[0].status == "queued"
    page = text(client.get("/integration/"))
    assert "The Knox integration is active" in page
    assert 'data-testid="integration-state">Active' in page
    assert "Sync now" in page and "Deactivate" in page

    # Deactivate keeps everything and shows the Activate button again.
    response = actions.post("/integration/deactivate")
    assert response.status_code == 303
    session.expire_all()
    assert integration.active is False
    assert count_rows(session, Profile) == 1
    page = text(client.get("/integration/"))
    assert "syncing stopped and all data was kept" in page
    assert "Activate" in page and "Sync now" not in page


def test_sync_now_starts_one_pull_and_says_so_the_second_time(
    client, login, actions, session, integration
):
    login()
    token = actions.token("/integration/")
    first = client.post(
        "/integration/sync", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert first.status_code == 200
    assert "Sync from KME started." in text(first)
    assert 'id="op-status-' in text(first) and 'hx-trigger="load delay:1s"' in text(first)
    second = client.post(
        "/integration/sync", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert "A sync from KME is already running" in text(second)
    assert count_rows(session, Operation, Operation.kind == "pull") == 1

    plain = actions.post("/integration/sync", follow_redirects=True)
    assert "A sync from KME is already running" in text(plain)
    assert count_rows(session, Operation, Operation.kind == "pull") == 1


# --- Uploads ---------------------------------------------------------------------------------


def test_uploads_tab_searches_sorts_and_pages(client, login, session):
    login()
    acme = make_reseller(session, name="Acme Mobile")
    other = make_reseller(session, name="Zeta Phones")
    make_upload(session, pending=3, reseller_id=acme.id, order_number="PO-ACME-1")
    make_upload(session, pending=7, reseller_id=other.id, order_number="PO-ZETA-1")
    big = make_upload(session, pending=0, reseller_id=other.id, order_number="PO-ZETA-2")
    big.device_count = 500
    big.status = "approved"
    session.commit()

    page = text(client.get("/integration/uploads?q=acme"))
    assert "PO-ACME-1" in page and "PO-ZETA-1" not in page

    page = text(client.get("/integration/uploads?sort=pending&dir=desc"))
    assert page.index("PO-ZETA-1") < page.index("PO-ACME-1") < page.index("PO-ZETA-2")
    page = text(client.get("/integration/uploads?sort=devices&dir=desc"))
    assert page.index("PO-ZETA-2") < page.index("PO-ZETA-1")
    page = text(client.get("/integration/uploads?sort=reseller&dir=asc"))
    assert page.index("PO-ACME-1") < page.index("PO-ZETA-1")

    page = text(client.get("/integration/uploads?per_page=2&sort=order&dir=asc"))
    assert "1–2 of 3" in page and "PO-ZETA-2" not in page
    page = text(client.get("/integration/uploads?per_page=2&page=2&sort=order&dir=asc"))
    assert "PO-ZETA-2" in page and "PO-ACME-1" not in page

    fragment = text(client.get("/integration/uploads?q=zeta", headers={"HX-Request": "true"}))
    assert "<html" not in fragment and "PO-ZETA-1" in fragment


def test_view_lists_the_devices_that_need_approval(client, login, session):
    login()
    upload = make_upload(session, pending=60)
    approved = make_profile(session)
    bulk_devices(session, 5, approved, upload_id=upload.id, model="SM-APPROVED")
    first = session.scalars(select(Device).where(Device.upload_id == upload.id)).first()

    page = text(client.get(f"/integration/uploads/{upload.id}"))
    assert "Devices waiting for approval" in page
    assert "1–50 of 60" in page and "SM-APPROVED" not in page
    page = text(client.get(f"/integration/uploads/{upload.id}?page=2"))
    assert "51–60 of 60" in page
    page = text(client.get(f"/integration/uploads/{upload.id}?q={first.imei}"))
    assert "1–1 of 1" in page and first.imei in page
    assert client.get("/integration/uploads/999999").status_code == 404


def test_approve_dialog_then_approve_starts_one_operation(client, login, actions, session):
    login()
    make_default_profile(session)
    reseller = make_reseller(session, name="Acme Mobile")
    upload = make_upload(session, pending=1200, reseller_id=reseller.id)

    dialog = client.get(f"/integration/uploads/{upload.id}/approve", headers={"HX-Request": "true"})
    fragment = text(dialog)
    assert "Approve 1,200 devices from reseller Acme Mobile?" in fragment
    assert "<html" not in fragment and "Cancel" in fragment

    token = actions.token(f"/integration/uploads/{upload.id}")
    response = client.post(
        f"/integration/uploads/{upload.id}/approve",
        data={"csrf_token": token, "expected_pending": "1200"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    fragment = text(response)
    assert f"Approving upload {upload.kme_upload_id}" in fragment
    assert "op-status-" in fragment
    operation = session.scalar(select(Operation).where(Operation.kind == "upload.approve"))
    assert operation.total == 1200
    assert count_rows(session, Device, Device.approval == "pending") == 0

    # A second click while it runs: a clear message, no second operation.
    again = client.post(
        f"/integration/uploads/{upload.id}/approve",
        data={"csrf_token": token, "expected_pending": "1200"},
        headers={"HX-Request": "true"},
    )
    assert again.status_code == 409
    assert "is already being approved" in text(again)
    assert count_rows(session, Operation, Operation.kind == "upload.approve") == 1


def test_approving_an_upload_someone_else_approved(client, login, actions, session):
    login()
    make_default_profile(session)
    upload = make_upload(session, pending=10)
    approvals.approve_upload(session, upload.id, "someone")
    operation = session.scalar(select(Operation))
    operation.status = "done"
    session.commit()

    response = actions.post(f"/integration/uploads/{upload.id}/approve", {"expected_pending": "10"})
    assert response.status_code == 409
    page = text(response)
    assert "has no devices waiting for approval: someone approved it already" in page
    assert "Reload" in page
    assert count_rows(session, Operation) == 1


def test_a_stale_approve_page_gets_409_and_a_reload_hint(client, login, actions, session):
    login()
    make_default_profile(session)
    upload = make_upload(session, pending=10)
    bulk_devices(session, 5, None, approval="pending", upload_id=upload.id)  # a pull added five

    response = actions.post(f"/integration/uploads/{upload.id}/approve", {"expected_pending": "10"})
    assert response.status_code == 409
    assert "15 devices are waiting now, not 10. Reload the page" in text(response)
    assert count_rows(session, Operation) == 0
    assert count_rows(session, Device, Device.approval == "pending") == 15


def test_approve_without_javascript_goes_to_the_upload_page(client, login, actions, session):
    login()
    make_default_profile(session)
    upload = make_upload(session, pending=4)
    page = text(client.get(f"/integration/uploads/{upload.id}/approve"))
    assert "<html" in page and "Approve 4 devices from reseller" in page
    response = actions.post(f"/integration/uploads/{upload.id}/approve", {"expected_pending": "4"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/integration/uploads/{upload.id}")
    page = text(client.get(response.headers["Location"]))
    assert "Approve 4 devices of upload" in page and "started" in page


def test_download_devices_as_csv(client, login, session):
    login()
    upload = make_upload(session, pending=3, order_number="=HYPERLINK(1)")
    other = make_upload(session, pending=2)
    approved = make_profile(session)
    bulk_devices(session, 4, approved, upload_id=upload.id)

    response = client.get(f"/integration/uploads/{upload.id}/devices.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert (
        f'filename="upload-{upload.kme_upload_id}-unapproved-devices-{day}.csv"'
        in response.headers["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(text(response).lstrip("\ufeff"))))
    assert rows[0] == list(uploads.PENDING_CSV_HEADER)
    assert len(rows) == 4
    assert {r[3] for r in rows[1:]} == {upload.kme_upload_id}
    assert all(r[5] == "'=HYPERLINK(1)" for r in rows[1:])  # formula-safe

    everything = client.get("/integration/uploads/devices.csv")
    rows = list(csv.reader(io.StringIO(text(everything).lstrip("\ufeff"))))
    assert len(rows) == 1 + 5
    assert {r[3] for r in rows[1:]} == {upload.kme_upload_id, other.kme_upload_id}
    assert f"unapproved-devices-{day}.csv" in everything.headers["Content-Disposition"]


# --- Resellers -------------------------------------------------------------------------------


def test_resellers_link_to_the_rules_that_name_them(client, login, session, admin):
    login()
    make_default_profile(session)
    acme = make_reseller(session, name="Acme Mobile")
    other = make_reseller(session, name="Other Mobile")
    warehouse = make_profile(session, name="Warehouse")
    rule = rules.create_rule(
        session,
        {"name": "Acme to the warehouse", "reseller_ids": [acme.id], "profile_id": warehouse.id},
        admin,
    )
    session.commit()

    listing = text(client.get("/integration/resellers"))
    assert f'href="/admin/rules/{rule.id}"' in listing and "Acme to the warehouse" in listing
    assert "None: the other rules apply" in listing  # Other Mobile

    page = text(client.get(f"/integration/resellers/{acme.id}"))
    assert "Acme to the warehouse" in page
    assert f'href="/admin/rules/new?reseller_id={acme.id}"' in page
    page = text(client.get(f"/integration/resellers/{other.id}"))
    assert "No rule names this reseller" in page
    assert client.get("/integration/resellers/999999").status_code == 404


# --- Viewer ----------------------------------------------------------------------------------


def test_a_viewer_sees_every_tab_without_controls_and_cannot_post(
    client, login, actions, session, integration
):
    make_default_profile(session) if not session.scalar(select(Profile.id)) else None
    reseller = session.scalar(select(Reseller)) or make_reseller(session)
    upload = make_upload(session, pending=3, reseller_id=reseller.id)
    login("viewer")
    settings = text(client.get("/integration/"))
    assert "Demo KME" in settings and '<form id="settings-form"' not in settings
    assert "Sync now" not in settings and "Deactivate" not in settings
    uploads = text(client.get("/integration/uploads"))
    assert upload.kme_upload_id in uploads and "Approve All Devices" not in uploads
    view = text(client.get(f"/integration/uploads/{upload.id}"))
    assert "Approve All Devices" not in view and "Download Devices as CSV" in view
    resellers = text(client.get("/integration/resellers"))
    assert reseller.kme_reseller_id in resellers
    page = text(client.get(f"/integration/resellers/{reseller.id}"))
    assert "Add a rule for this reseller" not in page

    for path in (
        "/integration/settings",
        "/integration/test",
        "/integration/activate",
        "/integration/deactivate",
        "/integration/sync",
        f"/integration/uploads/{upload.id}/approve",
    ):
        assert actions.post(path, {"name": "x"}).status_code == 403, path
    assert count_rows(session, Operation) == 0
    assert session.get(Upload, upload.id).status == "pending"


def test_an_uploads_waiting_devices_show_the_rule_that_holds_them(client, login, session, admin):
    login()
    make_default_profile(session)
    kiosk = make_profile(session, name="Kiosk")
    reseller = make_reseller(session)
    upload = make_upload(session, pending=2, reseller_id=reseller.id)
    tablet = session.scalars(select(Device).where(Device.upload_id == upload.id)).first()
    tablet.model = "SM-T505"
    rules.create_rule(
        session,
        {"name": "Tablets", "model_patterns": "SM-T*", "action": "approve", "profile_id": kiosk.id},
        admin,
    )
    session.commit()
    routing.route_uploads(session, [upload.id])  # the phone is held, so the upload waits

    page = text(client.get(f"/integration/uploads/{upload.id}"))
    assert "Everything else" in page and "Tablets" in page
    assert "Waits with its upload: another rule holds some of the upload" in page
    dialog = text(client.get(f"/integration/uploads/{upload.id}/approve"))
    assert "land in <strong>Kiosk (1 device), Samsung KME Default Profile (1 device)" in dialog


def test_the_portal_policy_is_a_choice_of_the_settings_and_audited(
    client, login, actions, session, sim
):
    from kmeweb.audit.models import AuditEvent
    from kmeweb.integration.models import PortalPolicy

    login()
    assert actions.post("/integration/settings", sim_form(sim)).status_code == 303
    integration = get_integration(session)
    assert integration.portal_policy == PortalPolicy.ADOPT  # the default
    page = text(client.get("/integration/"))
    assert "kmeweb is the source of truth: send kmeweb&#39;s value again" in page
    assert re.search(r'<input [^>]*checked[^>]*value="adopt"', page)
    response = actions.post("/integration/settings", sim_form(sim, portal_policy="ours"))
    assert response.status_code == 303
    session.expire_all()
    assert get_integration(session).portal_policy == PortalPolicy.OURS
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "integration.settings")
        .order_by(AuditEvent.id.desc())
    )
    assert event.details["portal_policy"] == ["adopt", "ours"]
    assert re.search(r'<input [^>]*checked[^>]*value="ours"', text(client.get("/integration/")))
    response = actions.post("/integration/settings", sim_form(sim, portal_policy="both"))
    assert response.status_code == 422
    assert "changes made in the Samsung portal" in text(response)
