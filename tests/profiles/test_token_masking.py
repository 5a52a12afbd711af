"""Enrollment tokens show masked everywhere (profile page, edit page, lists, htmx partials, the
live preview, exports); an admin reveals one with Reveal (audited each time); a viewer cannot."""

from __future__ import annotations

from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.profiles import services
from tests.audit.test_no_secrets import _crawl
from tests.factories import bulk_devices, make_default_profile, make_profile

HX = {"HX-Request": "true"}


def _reveals(session) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.action == "profile.token_reveal")
    return list(session.scalars(stmt))


def _profiles(session):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    lab = make_profile(session, name="Lab", kind="self_maintained", config={})
    bulk_devices(session, 2, sales)
    return sales, lab


def test_mask_token_keeps_only_the_last_four_characters():
    token = "abcdefghijklmnopqrstuvwxyz012345"
    masked = services.mask_token(token)
    assert masked.endswith("2345") and "abcd" not in masked and len(masked) < len(token)
    assert services.mask_token(None) == ""


def test_a_viewer_reads_no_token_on_any_page(app, client, login, session):
    sales, lab = _profiles(session)
    login("viewer")
    pages = _crawl(app, client)
    assert f"/profiles/{sales.id}" in pages and f"/profiles/{sales.id}/edit" in pages
    leaks = [(url, p.name) for url, body in pages.items() for p in (sales, lab) if p.token in body]
    assert not leaks
    assert services.mask_token(sales.token) in pages[f"/profiles/{sales.id}"]
    assert ">Reveal<" not in pages[f"/profiles/{sales.id}"]


def test_an_admin_sees_tokens_masked_until_reveal(client, login, actions, session):
    sales, lab = _profiles(session)
    login("admin")
    for path in (f"/profiles/{sales.id}", f"/profiles/{sales.id}/edit", f"/profiles/{lab.id}"):
        for headers in ({}, HX):
            body = client.get(path, headers=headers).get_data(as_text=True)
            assert sales.token not in body and lab.token not in body, path
            shown = sales.token if path.startswith(f"/profiles/{sales.id}") else lab.token
            assert headers or services.mask_token(shown) in body
    body = client.get(f"/profiles/{sales.id}?part=devices", headers=HX).get_data(as_text=True)
    assert sales.token not in body
    preview = actions.post(
        "/profiles/preview", {"kind": "kme", "profile_id": str(sales.id)}, headers=HX
    )
    assert preview.status_code == 200 and sales.token not in preview.get_data(as_text=True)
    assert _reveals(session) == []

    revealed = actions.post(f"/profiles/{sales.id}/token/reveal", headers=HX)
    assert revealed.status_code == 200
    body = revealed.get_data(as_text=True)
    assert sales.token in body and "<html" not in body and "Copy" in body
    plain = actions.post(f"/profiles/{sales.id}/token/reveal")
    assert plain.status_code == 200 and sales.token in plain.get_data(as_text=True)

    events = _reveals(session)
    assert [(e.actor, e.target_id, e.details) for e in events] == [
        ("admin@example.com", str(sales.id), {"name": "Sales"})
    ] * 2


def test_a_viewer_cannot_reveal_a_token(client, login, actions, session):
    sales, _lab = _profiles(session)
    login("viewer")
    response = actions.post(f"/profiles/{sales.id}/token/reveal", headers=HX)
    assert response.status_code == 403 and sales.token not in response.get_data(as_text=True)
    assert _reveals(session) == []


def test_reveal_of_a_missing_profile_is_404(client, login, actions, session):
    login("admin")
    assert actions.post("/profiles/4242/token/reveal", headers=HX).status_code == 404
