"""No secret the console takes reaches a viewer: an admin saves one of every kind (Knox client
secret and keys.json, webhook URLs and shared secret, Wi-Fi password, enrollment password,
console passwords), then a viewer walks every page, htmx partial and CSV download reachable
from the navigation, and none holds any of them. Audit details keep a webhook URL's scheme and
host only."""

from __future__ import annotations

import io
import json
import re
from collections import deque
from urllib.parse import urldefrag, urlsplit

from flask import url_for
from sqlalchemy import select

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.devices import services as devices
from kmeweb.profiles.models import Profile
from kmeweb.redact import HIDDEN, mask_url, redact_details, scrub_text
from tests.conftest import PASSWORD
from tests.factories import bulk_devices, make_default_profile, make_end_user, make_profile
from tests.profiles.test_profile_views import _kme_form

KNOX_SECRET = "knox-client-secret-Q7x9"
KEYS_PRIVATE = "keys-private-PRV-8f2a"
CLIENT_IDENTIFIER = "legacy-identifier-Ident-55"
WEBHOOK_PATH_SECRET = "hookpathsecret42"
WEBHOOK_URL = f"https://hooks.example.com/services/T0SECRET/B0SECRET/{WEBHOOK_PATH_SECRET}"
USERINFO_SECRET = "userinfo-secret-3"
QUERY_SECRET = "query-secret-9"
OTHER_WEBHOOK = f"https://alice:{USERINFO_SECRET}@hooks.example.net/in?token={QUERY_SECRET}"
SHARED_SECRET = "shared-hmac-secret-77"
WIFI_PASSWORD = "wifi-pass-Zebra-31"
ENROLL_PASSWORD = "enroll-pin-5150"
CONSOLE_PASSWORD = "console-pass-Orca-99"

SECRETS = [
    KNOX_SECRET,
    KEYS_PRIVATE,
    CLIENT_IDENTIFIER,
    WEBHOOK_PATH_SECRET,
    "T0SECRET",
    USERINFO_SECRET,
    QUERY_SECRET,
    SHARED_SECRET,
    WIFI_PASSWORD,
    ENROLL_PASSWORD,
    CONSOLE_PASSWORD,
    PASSWORD,
]
LINK = re.compile(r'(?:href|hx-get)="(/[^"]*)"')
NEVER_FOLLOW = ("/auth/logout", "/static/")
PAGES_MAX = 250


def test_redact_details_hides_secrets_and_credential_urls():
    details = {
        "name": "Ops",
        "url": WEBHOOK_URL,
        "secret": SHARED_SECRET,
        "without_token": True,
        "token_expiry_days": 30,
        "wifi_password": WIFI_PASSWORD,
        "changed": ["secret", "url"],
        "nested": [{"client_secret": KNOX_SECRET, "note": f"sent to {OTHER_WEBHOOK} at 9"}],
        "server_url": "https://mdm.example.com/agent.apk",
    }
    assert redact_details(details) == {
        "name": "Ops",
        "url": "https://hooks.example.com/…",
        "secret": HIDDEN,
        "without_token": True,
        "token_expiry_days": 30,
        "wifi_password": HIDDEN,
        "changed": ["secret", "url"],
        "nested": [
            {
                "client_secret": HIDDEN,
                "note": "sent to https://hooks.example.net/in?token=%E2%80%A6 at 9",
            }
        ],
        "server_url": "https://mdm.example.com/agent.apk",
    }
    assert mask_url(OTHER_WEBHOOK) == "https://hooks.example.net/…"
    assert mask_url("https://hooks.example.com") == "https://hooks.example.com/"
    assert scrub_text("no url here") == "no url here"


def _save_every_secret(actions, session, admin) -> None:
    """Each secret through the form that takes it (the enrollment password through its
    service: no page sets it one device at a time)."""
    knox = {
        "name": "Knox EU",
        "auth_mode": "oauth",
        "region": "custom",
        "base_url": "https://kme.example.com",
        "client_id": "client-id-visible",
        "client_secret": KNOX_SECRET,
        "customer_id": "cust-1",
        "sync_interval_min": "15",
    }
    assert actions.post("/integration/settings", knox).status_code == 303
    keys = json.dumps({"Public": "keys-public", "Private": KEYS_PRIVATE}).encode()
    legacy = {**knox, "auth_mode": "legacy", "client_secret": "", "client_id": ""}
    legacy["client_identifier"] = CLIENT_IDENTIFIER
    legacy["keys_file"] = (io.BytesIO(keys), "keys.json")
    response = actions.post("/integration/settings", legacy, content_type="multipart/form-data")
    assert response.status_code == 303, response.get_data(as_text=True)

    hook = {"name": "Ops channel", "url": WEBHOOK_URL, "secret": SHARED_SECRET,
            "events": ["token_expired"], "token_days": "14", "upload_hours": "24",
            "enabled": "y"}  # fmt: skip
    assert actions.post("/admin/alerts/new", hook).status_code == 303
    other = {**hook, "name": "Own receiver", "url": OTHER_WEBHOOK, "secret": ""}
    assert actions.post("/admin/alerts/new", other).status_code == 303

    form = _kme_form(name="Field", extra_wifi_ssid="corp", extra_wifi_password=WIFI_PASSWORD)
    assert actions.post("/profiles/new", form).status_code == 303
    field = session.scalar(select(Profile).where(Profile.name == "Field"))
    assert field.secrets()["wifi_password"] == WIFI_PASSWORD

    lab = make_profile(session, name="Lab", kind="self_maintained", config={})
    ids = bulk_devices(session, 2, lab)
    user = make_end_user(session, username="ann@example.com")
    devices.set_device_user(session, ids, user.id, ENROLL_PASSWORD, admin)
    session.commit()


def _links(html: str) -> list[str]:
    return [urldefrag(link.replace("&amp;", "&"))[0] for link in LINK.findall(html)]


def _every_get_route(app) -> list[str]:
    """Each GET route, its ids 1 to 3 (what a viewer may type into the address bar)."""
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in ("static", "enroll.enroll"):
                continue
            for n in (1, 2, 3) if rule.arguments else (None,):
                urls.append(url_for(rule.endpoint, **dict.fromkeys(rule.arguments, n)))
    return urls


def _crawl(app, client) -> dict[str, str]:
    """Every page, partial and download a viewer reaches from the navigation, and every GET
    route with ids 1 to 3: url -> body."""
    seen: dict[str, str] = {}
    per_path: dict[str, int] = {}
    queue = deque(["/", *_every_get_route(app)])
    while queue and len(seen) < PAGES_MAX:
        url = queue.popleft()
        path = urlsplit(url).path
        if url in seen or url.startswith(NEVER_FOLLOW) or per_path.get(path, 0) >= 4:
            continue
        per_path[path] = per_path.get(path, 0) + 1
        response = client.get(url, headers={"HX-Request": "true"} if "part=" in url else {})
        body = response.get_data(as_text=True)
        response.close()
        assert response.status_code < 500, url
        seen[url] = body
        if "text/html" in response.content_type:
            queue.extend(link for link in _links(body) if link not in seen)
    return seen


def test_a_viewer_reaches_no_secret_on_any_page_or_export(app, client, login, actions, session):
    admin = login("admin")
    make_default_profile(session)
    _save_every_secret(actions, session, admin)
    # A console password typed into the email field of the sign-in form.
    actions.post("/auth/logout")
    actions.login(CONSOLE_PASSWORD, "whatever")
    audit.record(session, "sync", "sync.note", None, None, {"note": f"called {OTHER_WEBHOOK}"})
    session.commit()

    login("viewer")
    pages = _crawl(app, client)

    assert "/audit/" in pages and any(u.endswith(".csv") for u in pages)
    assert any("/admin/alerts/" in u for u in pages) and any("/profiles/" in u for u in pages)
    leaks = [(url, s) for url, body in pages.items() for s in SECRETS if s in body]
    assert not leaks
    created = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "alert.destination_create")
    )
    assert created.details["url"] == "https://hooks.example.com/…"
