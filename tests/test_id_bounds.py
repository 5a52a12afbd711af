"""Ids from forms and query strings: out of the database's range or not a number, every route
answers 404 or 422 (never 500), and garbage is refused rather than read as "none"."""

from __future__ import annotations

import pytest
from flask import url_for
from sqlalchemy import select

from kmeweb.errors import ValidationError
from kmeweb.ids import MAX_DB_INT, parse_id
from kmeweb.profiles.models import Profile
from kmeweb.rules import services as rules
from kmeweb.rules.models import RoutingRule
from tests.factories import (
    bulk_devices,
    make_default_profile,
    make_end_user,
    make_profile,
    make_reseller,
    make_upload,
)
from tests.profiles.test_profile_views import _kme_form

HX = {"HX-Request": "true"}
HUGE = str(2**64 + 1)  # past SQLite's and PostgreSQL's largest integer
BAD_IDS = [HUGE, str(MAX_DB_INT + 1), "-1", "abc", "²", "1e3"]
# Every request field that carries an id or a number read as one.
ID_FIELDS = (
    "end_user_id",
    "profile_id",
    "reseller_ids",
    "rule",
    "order",
    "expected_order",
    "expected_changes",
    "device_ids",
    "from_profile_id",
    "expected_pending",
    "version",
    "page",
    "per_page",
    "op",
    "reseller",
    "profile",
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1),
        (" 42 ", 42),
        (str(MAX_DB_INT), MAX_DB_INT),
        (str(MAX_DB_INT + 1), None),
        (HUGE, None),
        ("0", None),
        ("-1", None),
        ("abc", None),
        ("²", None),
        ("١٢", None),
        ("", None),
        (None, None),
        (7, 7),
        (True, None),
    ],
)
def test_parse_id_takes_only_database_ids(raw, expected):
    assert parse_id(raw) == expected


@pytest.fixture
def world(session):
    """One of everything an id can name; the KME profile is what <profile_id> routes get."""
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    lab = make_profile(session, name="Lab", kind="self_maintained", config={})
    bulk_devices(session, 2, sales)
    user = make_end_user(session)
    reseller = make_reseller(session, name="Acme Mobile")
    upload = make_upload(session, pending=2, reseller_id=reseller.id)
    rule = rules.create_rule(
        session, {"name": "Acme", "reseller_ids": [reseller.id], "profile_id": sales.id}, "test"
    )
    session.commit()
    return {
        "sales": sales,
        "lab": lab,
        "user": user,
        "reseller": reseller,
        "upload": upload,
        "rule": rule,
    }


def test_user_picker_refuses_an_id_past_the_range(client, login, world):
    login("admin")
    for bad in (HUGE, str(MAX_DB_INT + 1), "abc"):
        response = client.get(f"/profiles/users?end_user_id={bad}", headers=HX)
        assert response.status_code == 422, bad
        assert "No user" in response.get_data(as_text=True)  # the options still render


@pytest.mark.parametrize("bad", [HUGE, str(MAX_DB_INT + 1), "abc"])
def test_profile_forms_refuse_a_bad_user_id(client, login, actions, session, world, bad):
    login("admin")
    sales = world["sales"]
    created = actions.post("/profiles/new", _kme_form(end_user_id=bad), headers=HX)
    assert created.status_code == 422
    assert 'id="end_user_id-error"' in created.get_data(as_text=True)
    assert session.scalar(select(Profile).where(Profile.name == "Sales phones")) is None

    edit = {"kind": "kme", "name": "Sales", "version": str(sales.version), "end_user_id": bad}
    edited = actions.post(f"/profiles/{sales.id}/edit", _kme_form(**edit), headers=HX)
    assert edited.status_code == 422
    assert 'id="end_user_id-error"' in edited.get_data(as_text=True)

    changed = actions.post(f"/profiles/{sales.id}/user", {"end_user_id": bad}, headers=HX)
    assert changed.status_code == 422
    assert 'id="end_user_id-error"' in changed.get_data(as_text=True)
    session.expire_all()
    assert session.get(Profile, sales.id).end_user_id is None


@pytest.mark.parametrize("bad", ["abc", HUGE, str(MAX_DB_INT + 1), "-3"])
def test_a_rule_with_garbage_ids_is_refused_on_each_field(session, world, bad):
    reseller, sales = world["reseller"], world["sales"]
    data = {"name": "Garbage", "reseller_ids": [bad], "profile_id": bad, "end_user_id": bad}
    with pytest.raises(ValidationError) as refused:
        rules.create_rule(session, data, "test")
    fields = {e.field for e in refused.value.each()}
    assert {"reseller_ids", "profile_id", "end_user_id"} <= fields
    session.rollback()
    assert session.scalar(select(RoutingRule.id).where(RoutingRule.name == "Garbage")) is None
    ok = {"name": "Fine", "reseller_ids": [reseller.id], "profile_id": str(sales.id)}
    assert rules.create_rule(session, ok, "test").profile_id == sales.id


def _url(app, rule, world) -> str:
    ids = {
        "profile_id": world["sales"].id,
        "reseller_id": world["reseller"].id,
        "upload_id": world["upload"].id,
        "user_id": world["user"].id,
        "rule_id": world["rule"].id,
    }
    with app.test_request_context():
        return url_for(rule.endpoint, **{arg: ids.get(arg, 1) for arg in rule.arguments})


def test_every_route_answers_bad_ids_without_500(app, client, login, actions, world):
    """Walks every signed-in route (GET and POST) with each bad value in every id field."""
    login("admin")
    token = actions.token("/profiles/")
    rules = [
        r
        for r in app.url_map.iter_rules()
        if r.endpoint != "static"
        and not r.endpoint.startswith(("auth.", "enroll.", "ops."))
        and "delete" not in r.endpoint
        and "deactivate" not in r.endpoint
    ]
    failures = []
    for rule in rules:
        url = _url(app, rule, world)
        for bad in BAD_IDS:
            fields = {name: bad for name in ID_FIELDS}
            if "GET" in rule.methods:
                response = client.get(url, query_string=fields, headers=HX)
                response.close()  # CSV downloads stream
                if response.status_code >= 500:
                    failures.append(("GET", url, bad, response.status_code))
            if "POST" in rule.methods:
                response = client.post(url, data={**fields, "csrf_token": token}, headers=HX)
                response.close()
                if response.status_code >= 500:
                    failures.append(("POST", url, bad, response.status_code))
    assert not failures, "\n".join(map(str, failures))
