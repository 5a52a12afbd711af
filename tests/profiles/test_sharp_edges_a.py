"""Issue 19, A.2, A.3 and A.5 below the browser: Extend never brings a token's expiry earlier,
Set expiry date is the explicit way from "never expires" to a date, Refresh asks first naming
the devices that wait for the token, and token work from Edit profile changes only the token
part of the page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from kmeweb.errors import ValidationError
from kmeweb.extensions import utcnow
from kmeweb.profiles import services
from tests.factories import bulk_devices, make_default_profile, make_device, make_profile

HX = {"HX-Request": "true"}


def test_extend_refuses_a_token_that_never_expires_and_set_expiry_gives_it_a_date(session, admin):
    profile = make_profile(session, token_expires_at=None)
    with pytest.raises(ValidationError, match="Extend cannot bring its expiry earlier") as err:
        services.extend_token(session, profile.id, 14, admin, from_current=True)
    assert err.value.field == "token_expiry_days"
    session.rollback()
    assert profile.token_expires_at is None
    # Extend to "never" from "never" is no shortening.
    services.extend_token(session, profile.id, None, admin, from_current=True)
    assert profile.token_expires_at is None
    token = profile.token
    services.set_token_expiry(session, profile.id, 14, admin)
    assert profile.token == token and 13 <= (profile.token_expires_at - utcnow()).days <= 14
    with pytest.raises(ValidationError, match="Choose 7 to 999 days"):
        services.set_token_expiry(session, profile.id, None, admin)


def test_extend_of_an_expired_token_counts_from_today(session, admin):
    profile = make_profile(session, token_expires_at=utcnow() - timedelta(days=30))
    services.extend_token(session, profile.id, 7, admin, from_current=True)
    assert 6 <= (profile.token_expires_at - utcnow()).days <= 7


def test_devices_awaiting_token_are_the_unregistered_ones_by_imei(session):
    profile = make_profile(session)
    bulk_devices(session, 2, profile, registered_at=utcnow())
    waiting = sorted(d.imei for d in (make_device(session, profile) for _ in range(4)))
    assert services.devices_awaiting_token(session, profile.id) == (4, waiting[:3])
    assert services.devices_awaiting_token(session, make_profile(session).id) == (0, [])


def test_refresh_asks_first_and_edit_profile_gets_only_its_token_part(
    client, login, actions, session
):
    login("admin")
    make_default_profile(session)
    sales = make_profile(session, name="Sales", token_expires_at=utcnow() + timedelta(days=10))
    make_device(session, sales)
    old = sales.token
    data = {"action": "refresh", "expiry_days": "30", "version": str(sales.version)}
    asked = actions.post(f"/profiles/{sales.id}/token", data, headers=HX)
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'data-testid="refresh-confirm"' in html
    assert "<strong>1</strong> device not registered yet needs the new token" in html
    session.expire_all()
    assert sales.token == old
    # From Edit profile (htmx): no redirect; the token part, version and snapshot swap in place.
    extend = {"action": "extend", "expiry_days": "7", "version": str(sales.version), "back": "edit"}
    done = actions.post(f"/profiles/{sales.id}/token", extend, headers=HX)
    body = done.get_data(as_text=True)
    assert done.status_code == 200 and done.headers["HX-Trigger"] == "kme:dialog-done"
    session.expire_all()
    assert f'id="version" name="version" value="{sales.version}" hx-swap-oob="true"' in body
    assert re.search(r'id="token-facts" hx-swap-oob="true"', body)
    assert "was extended" in body  # the flash message, out of band
