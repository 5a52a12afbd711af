"""Profiles through the JSON API, as a script uses them: list, create, read, change with
If-Match, delete, the token, the configuration, the associated user, the inventory CSV."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb.apitokens.models import Scope
from kmeweb.audit.models import AuditEvent
from kmeweb.outbox.models import Change, ChangeKind
from kmeweb.profiles import services
from kmeweb.profiles.models import Profile, ProfileKind
from tests.factories import (
    KME_CONFIG,
    bulk_devices,
    count_rows,
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
)

READ_ONLY = [Scope.PROFILES_READ.value]


def _audit(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_list_puts_the_default_first_with_counts_and_masked_tokens(api, session):
    sales = make_profile(session, name="Sales")
    default = make_default_profile(session)  # made after: still listed first
    lab = make_profile(session, name="Lab", kind=ProfileKind.SELF_MAINTAINED, config={})
    bulk_devices(session, 3, sales)
    make_device(session, sales, registered_at=sales.created_at)

    r = api.get("/profiles?limit=2")
    assert r.status_code == 200, r.get_json()
    page = r.get_json()
    assert [p["id"] for p in page["items"]] == [default.id, sales.id]
    first, second = page["items"]
    assert first["is_default"] and first["kind"] == ProfileKind.KME_DEFAULT
    assert first["token_masked"] is None and first["token_status"] is None
    assert second["devices"] == {"total": 4, "registered": 1, "pending": 3}
    assert second["token_masked"] == services.mask_token(sales.token)
    assert sales.token not in r.get_data(as_text=True)
    assert second["sync"]["state"] == "synced" and not second["is_default"]

    r = api.get(f"/profiles?limit=2&cursor={page['next_cursor']}")
    assert [p["id"] for p in r.get_json()["items"]] == [lab.id]
    assert r.get_json()["next_cursor"] is None
    assert [p["name"] for p in api.get("/profiles?q=sal").get_json()["items"]] == ["Sales"]


def test_create_answers_201_with_location_and_etag_and_queues_a_kme_profile(api, session):
    user = make_end_user(session)
    body = {
        "name": "Field sales",
        "description": "Phones of the field team",
        "end_user_id": user.id,
        "token_expiry_days": 30,
        "configuration": KME_CONFIG,
    }
    r = api.post("/profiles", body)
    assert r.status_code == 201, r.get_json()
    out = r.get_json()
    assert r.headers["Location"].endswith(f"/api/v1/profiles/{out['id']}")
    assert r.headers["ETag"] == f'"{out["id"]}-{out["version"]}"'
    assert out["kind"] == ProfileKind.KME and out["sync"]["state"] == "pending"
    assert out["end_user"] == {"id": user.id, "username": user.username}
    assert out["token_masked"] and out["token_expires_at"]
    changes = session.scalars(select(Change).where(Change.profile_id == out["id"])).all()
    assert [c.kind for c in changes] == [ChangeKind.PROFILE_CREATE]
    (event,) = _audit(session, "profile.create")
    assert "(API token script)" in event.actor

    r = api.post("/profiles", {"name": "Lab", "kind": "self_maintained", "token_expiry_days": None})
    assert r.status_code == 201 and r.get_json()["token_status"] == "never expires"
    assert count_rows(session, Change, Change.profile_id == r.get_json()["id"]) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad/name"}, "name"),
        ({"name": "Short token", "token_expiry_days": 3}, "token_expiry_days"),
        ({"name": "No MDM", "configuration": {"kme": {"do_enabled": True}}}, "kme.supported_mdm"),
    ],
)
def test_create_refuses_a_bad_value_naming_its_field(api, session, body, field):
    r = api.post("/profiles", body)
    assert r.status_code == 422
    assert r.mimetype == "application/problem+json"
    assert field in [e["field"] for e in r.get_json()["errors"]]
    assert count_rows(session, Profile) == 0


def test_patch_honours_if_match(api, session):
    profile = make_profile(session, name="Sales")
    r = api.get(f"/profiles/{profile.id}")
    etag = r.headers["ETag"]
    assert r.status_code == 200 and etag == f'"{profile.id}-{profile.version}"'

    stale = f'"{profile.id}-{profile.version - 1}"'
    r = api.patch(f"/profiles/{profile.id}", {"name": "Theirs"}, headers={"If-Match": stale})
    assert r.status_code == 412 and r.get_json()["code"] == "precondition_failed"
    session.expire_all()
    assert session.get(Profile, profile.id).name == "Sales"

    r = api.patch(
        f"/profiles/{profile.id}",
        {"name": "Sales EU", "description": "Europe"},
        headers={"If-Match": etag},
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["name"] == "Sales EU" and r.headers["ETag"] != etag
    assert count_rows(session, Change, Change.kind == ChangeKind.PROFILE_UPDATE) == 1


def test_the_default_profile_takes_a_description_only_and_stays(api, session):
    default = make_default_profile(session)
    r = api.patch(f"/profiles/{default.id}", {"end_user_id": make_end_user(session).id})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "end_user_id"
    r = api.patch(f"/profiles/{default.id}", {"description": "Unassigned"})
    assert r.status_code == 200 and r.get_json()["description"] == "Unassigned"
    r = api.delete(f"/profiles/{default.id}")
    assert r.status_code == 409 and r.get_json()["code"] == "conflict"


def test_delete_moves_devices_to_the_default_and_honours_if_match(api, session):
    default = make_default_profile(session)
    lab = make_profile(session, name="Lab", kind=ProfileKind.SELF_MAINTAINED, config={})
    bulk_devices(session, 2, lab)
    r = api.delete(f"/profiles/{lab.id}", headers={"If-Match": f'"{lab.id}-0"'})
    assert r.status_code == 412
    r = api.delete(f"/profiles/{lab.id}")
    assert r.status_code == 200 and r.get_json() == {"id": lab.id, "devices_moved_to_default": 2}
    session.expire_all()
    assert session.get(Profile, lab.id) is None
    assert api.get(f"/profiles/{default.id}").get_json()["devices"]["total"] == 2
    assert api.get(f"/profiles/{lab.id}").status_code == 404


def test_refresh_gives_a_new_token_the_old_one_stops_and_reveal_is_audited(api, session):
    profile = make_profile(session, name="Sales")
    old = profile.token
    r = api.post(f"/profiles/{profile.id}/token/refresh", {"token_expiry_days": 60})
    assert r.status_code == 200, r.get_json()
    assert old not in r.get_data(as_text=True)
    assert r.get_json()["token_masked"] != services.mask_token(old)
    assert services.profile_for_token(session, old) is None
    (event,) = _audit(session, "profile.token_refresh")
    assert event.details["days"] == 60 and "(API token script)" in event.actor

    r = api.get(f"/profiles/{profile.id}/token")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    new = r.get_json()["token"]
    assert new != old and services.profile_for_token(session, new).id == profile.id
    assert len(_audit(session, "profile.token_reveal")) == 1


def test_extend_never_expires_and_set_expiry_keep_the_token(api, session):
    profile = make_profile(session, name="Sales", token_expires_at=None)
    token = profile.token
    base = f"/profiles/{profile.id}/token"
    r = api.post(base + "/extend", {"token_expiry_days": 30})
    assert r.status_code == 422  # Extend never brings a never-expiring token earlier
    assert r.get_json()["errors"][0]["field"] == "token_expiry_days"

    r = api.post(base + "/expiry", {"token_expiry_days": 10})
    assert r.status_code == 200 and r.get_json()["token_expires_at"]
    first = r.get_json()["token_expires_at"]
    r = api.post(base + "/extend", {"token_expiry_days": 20})
    assert r.status_code == 200 and r.get_json()["token_expires_at"] > first
    r = api.post(base + "/never-expires")
    assert r.status_code == 200 and r.get_json()["token_expires_at"] is None
    assert r.get_json()["token_status"] == "never expires"
    session.expire_all()
    assert session.get(Profile, profile.id).token == token
    actions = [e.action for e in _audit(session, "profile.token_extend")]
    assert len(actions) == 2 and len(_audit(session, "profile.token_expiry")) == 1


def test_configuration_round_trip_keeps_the_wifi_password_secret(api, session):
    profile = make_profile(session, name="Sales")
    config = {
        **KME_CONFIG,
        "system_extras": {"wifi_ssid": "corp", "wifi_security_type": "WPA"},
        "custom_keys": [{"key": "site", "type": "string", "value": "berlin"}],
    }
    config["system_extras"] = {**config["system_extras"], "wifi_password": "hunter22"}
    r = api.put(f"/profiles/{profile.id}/configuration", config)
    assert r.status_code == 200, r.get_json()
    assert "hunter22" not in r.get_data(as_text=True) and r.get_json()["has_wifi_password"]

    got = api.get(f"/profiles/{profile.id}/configuration")
    assert got.headers["ETag"] == r.headers["ETag"]
    out = got.get_json()
    assert "hunter22" not in got.get_data(as_text=True)
    assert out["system_extras"]["wifi_ssid"] == "corp" and out["has_wifi_password"]
    assert out["custom_keys"] == [{"key": "site", "type": "string", "value": "berlin"}]
    assert out["kme"]["company_name"] == "Example Corp"

    # What GET answered, sent back: the stored password is kept.
    sent = {k: v for k, v in out.items() if k != "has_wifi_password"}
    sent["custom_keys"].append({"key": "max_apps", "type": "integer", "value": 12})
    r = api.put(f"/profiles/{profile.id}/configuration", sent)
    assert r.status_code == 200 and r.get_json()["has_wifi_password"]
    session.expire_all()
    assert session.get(Profile, profile.id).secrets() == {"wifi_password": "hunter22"}
    assert r.get_json()["custom_keys"][1]["value"] == 12

    r = api.put(f"/profiles/{profile.id}/configuration", {**sent, "wifi_password_clear": True})
    assert r.status_code == 200 and not r.get_json()["has_wifi_password"]
    r = api.put(f"/profiles/{profile.id}/configuration", {"agent": {"colour": "red"}})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "agent.colour"


def test_associated_user(api, session):
    profile = make_profile(session, name="Sales")
    user = make_end_user(session)
    r = api.put(f"/profiles/{profile.id}/user", {"end_user_id": user.id})
    assert r.status_code == 200 and r.get_json()["end_user"]["id"] == user.id
    assert count_rows(session, Change, Change.kind == ChangeKind.PROFILE_UPDATE) == 1
    r = api.put(f"/profiles/{profile.id}/user", {"end_user_id": user.id + 1000})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "end_user_id"
    r = api.put(f"/profiles/{profile.id}/user", {"end_user_id": None})
    assert r.status_code == 200 and r.get_json()["end_user"] is None


def test_inventory_is_the_pages_csv(api, client, login, session):
    profile = make_profile(session, name="Sales")
    make_device(session, profile, model="=HYPERLINK(1)")
    r = api.get(f"/profiles/{profile.id}/inventory")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.is_streamed  # written as it is read, never built in memory (design.md 6.4)
    body = r.get_data(as_text=True)
    assert body.splitlines()[0].lstrip("\ufeff").startswith("IMEI,Serial,Model")
    assert "'=HYPERLINK(1)" in body
    assert api.get("/profiles/999999/inventory").status_code == 404
    login("admin")
    page = client.get(f"/profiles/{profile.id}/inventory.csv")
    assert page.get_data(as_text=True) == body
    assert page.headers["Content-Disposition"] == r.headers["Content-Disposition"]


def test_the_document_names_the_inventory_csv(api):
    doc = api.get("/openapi.json").get_json()
    ok = doc["paths"]["/api/v1/profiles/{profile_id}/inventory"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/csv"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/profiles", {"name": "X"}),
        ("patch", "/profiles/{id}", {"description": "x"}),
        ("delete", "/profiles/{id}", None),
        ("post", "/profiles/{id}/token/refresh", {}),
        ("post", "/profiles/{id}/token/extend", {}),
        ("post", "/profiles/{id}/token/never-expires", None),
        ("post", "/profiles/{id}/token/expiry", {"token_expiry_days": 10}),
        ("get", "/profiles/{id}/token", None),
        ("put", "/profiles/{id}/configuration", {}),
        ("put", "/profiles/{id}/user", {"end_user_id": None}),
    ],
)
def test_writes_and_reveal_need_the_write_scope(api_as, session, method, path, body):
    profile = make_profile(session, name="Sales")
    reader = api_as(scopes=READ_ONLY)
    url = path.replace("{id}", str(profile.id))
    args = () if body is None or method in ("get", "delete") else (body,)
    r = getattr(reader, method)(url, *args)
    assert r.status_code == 403 and r.get_json()["code"] == "insufficient_scope"
    assert reader.get(f"/profiles/{profile.id}").status_code == 200
    session.expire_all()
    assert session.get(Profile, profile.id).version == profile.version
