"""Both authentication schemes: token caching, renewal, refusal, and what the simulator checks."""

from __future__ import annotations

import logging
import time
import uuid

import jwt
import pytest

from kmeweb.knox import KnoxAuthError, KnoxClient, KnoxConfigError, KnoxRejectedError
from kmeweb.knox.crypto import generate_private_key, load_key_pair, sign_knox_jwt
from kmeweb.knox.errors import (
    ACCESS_TOKEN_BAD_REQUEST,
    API_KEY_NON_UNIQUE_JWTID,
    CUSTOMER_ID_INVALID,
    TENANT_MISMATCH,
)
from kmeweb.knox.simulator import demo_config

LIST = "GET /kcs/v1/kme/devices/list"
OAUTH = "POST /ams/v1/oauth2/token"
LEGACY = "POST /ams/v1/users/accesstoken"


def _legacy_access_token(sim) -> tuple[str, object, str]:
    """Run the legacy flow by hand: signed client identifier -> access token."""
    key, pub = load_key_pair(sim.creds["legacy_keys_json"])
    client_jwt = sign_knox_jwt(
        {"clientIdentifier": sim.creds["legacy_client_identifier"], "publicKey": pub}, key
    )
    resp = sim.http.post(
        sim.url + "/ams/v1/users/accesstoken",
        json={"clientIdentifierJwt": client_jwt, "base64EncodedStringPublicKey": pub},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["accessToken"], key, pub


def test_token_is_fetched_once_and_reused(sim, auth_mode):
    with sim.client(auth_mode) as client:
        for _ in range(3):
            client.check_connection()
    token_key = OAUTH if auth_mode == "oauth" else LEGACY
    assert sim.calls(token_key) == {"calls": 1, "200": 1}
    assert sim.calls(LIST) == {"calls": 3, "200": 3}


def test_oauth_token_renewed_before_expiry(make_sim):
    sim = make_sim(oauth_token_lifetime_s=2)
    with sim.client("oauth") as client:
        client.check_connection()
        time.sleep(2.05)
        client.check_connection()
    assert sim.calls(OAUTH) == {"calls": 2, "200": 2}
    assert sim.calls(LIST) == {"calls": 2, "200": 2}  # never refused


def test_expired_token_gets_one_renewal_and_one_retry(sim, auth_mode):
    with sim.client(auth_mode) as client:
        client.check_connection()
        sim.control("POST", "/tokens/expire")
        assert client.check_connection() == 1450
    assert sim.calls(LIST) == {"calls": 3, "200": 2, "401": 1}
    token_key = OAUTH if auth_mode == "oauth" else LEGACY
    assert sim.calls(token_key)["200"] == 2


def test_legacy_token_expiry_from_short_lifetime(make_sim):
    sim = make_sim(legacy_token_lifetime_s=1)
    with sim.client("legacy") as client:
        client.check_connection()
        time.sleep(1.1)
        client.check_connection()
    assert sim.calls(LIST) == {"calls": 3, "200": 2, "401": 1}
    assert sim.calls(LEGACY) == {"calls": 2, "200": 2}


def test_refused_again_after_renewal_raises_auth_error(sim, auth_mode):
    # Every devices/list answers 401 (as if the token were never accepted).
    sim.fault(path="/kcs/v1/kme/devices/list", status=401, code=ACCESS_TOKEN_BAD_REQUEST)
    with sim.client(auth_mode) as client, pytest.raises(KnoxAuthError) as info:
        client.check_connection()
    assert info.value.status == 401
    assert sim.calls(LIST)["calls"] == 2


def test_reused_jti_refused(sim):
    key, pub = load_key_pair(sim.creds["legacy_keys_json"])
    now = int(time.time())
    claims = {
        "clientIdentifier": sim.creds["legacy_client_identifier"],
        "publicKey": pub,
        "aud": "KnoxWSM",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 1800,
    }
    signed = jwt.encode(claims, key, algorithm="RS512")
    body = {"clientIdentifierJwt": signed, "base64EncodedStringPublicKey": pub}
    first = sim.http.post(sim.url + "/ams/v1/users/accesstoken", json=body)
    again = sim.http.post(sim.url + "/ams/v1/users/accesstoken", json=body)
    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json()["code"] == API_KEY_NON_UNIQUE_JWTID
    assert again.json()["message"] == "API_KEY_NON_UNIQUE_JWTID"


def test_legacy_jwt_signed_with_another_key_refused(sim):
    _key, pub = load_key_pair(sim.creds["legacy_keys_json"])
    other = generate_private_key()
    forged = sign_knox_jwt(
        {"clientIdentifier": sim.creds["legacy_client_identifier"], "publicKey": pub}, other
    )
    resp = sim.http.post(
        sim.url + "/ams/v1/users/accesstoken",
        json={"clientIdentifierJwt": forged, "base64EncodedStringPublicKey": pub},
    )
    assert resp.status_code == 401 and resp.json()["code"] == 4010000


def test_legacy_customer_id_required_and_checked(sim):
    access, key, pub = _legacy_access_token(sim)
    header = {"x-knox-apitoken": sign_knox_jwt({"accessToken": access, "publicKey": pub}, key)}
    missing = sim.http.get(sim.url + "/kcs/v1/kme/devices/list", headers=header)
    assert missing.status_code == 400
    assert missing.json()["code"] == CUSTOMER_ID_INVALID
    ok = sim.http.get(
        sim.url + "/kcs/v1/kme/devices/list",
        params={"customerId": sim.creds["customer_id"], "pageSize": 1},
        headers=header,
    )
    assert ok.status_code == 200 and ok.json()["totalCount"] == 1450


def test_legacy_client_needs_customer_id(sim):
    config = sim.config("legacy", customer_id=None)
    with pytest.raises(KnoxConfigError):
        KnoxClient(config)


def test_other_tenants_customer_id_is_tenant_mismatch(sim, auth_mode):
    other = sim.control("POST", "/tenants", json={"customerId": "C-OTHER", "legacy": False})
    assert other["customer_id"] == "C-OTHER"
    with sim.client(auth_mode, customer_id="C-OTHER") as client:
        with pytest.raises(KnoxRejectedError) as info:
            client.check_connection()
    assert (info.value.status, info.value.code) == (400, TENANT_MISMATCH)


def test_oauth_customer_id_is_optional(sim):
    with sim.client("oauth", customer_id=None) as client:
        assert client.check_connection() == 1450


def test_tenants_are_isolated(sim):
    other = sim.control("POST", "/tenants", json={"legacy": False})
    sim.control("POST", "/uploads", json={"customerId": other["customer_id"], "count": 3,
                                           "resellerName": "Other reseller"})  # fmt: skip
    creds = {**sim.creds, **other}
    with KnoxClient(demo_config(creds, sim.url, "oauth")) as client:
        assert client.check_connection() == 3


def test_missing_token_is_401_with_documented_body(sim):
    resp = sim.http.get(sim.url + "/kcs/v1/kme/devices/list")
    assert resp.status_code == 401
    body = resp.json()
    assert set(body) == {"errorId", "code", "message", "data"}
    assert body["code"] == ACCESS_TOKEN_BAD_REQUEST


def test_signed_access_token_reuse_when_simulator_demands_unique_jti(make_sim):
    sim = make_sim(legacy_require_unique_request_jti=True)
    with sim.client("legacy") as cached:
        cached.check_connection()
        with pytest.raises(KnoxRejectedError) as info:
            cached.check_connection()
    assert info.value.code == API_KEY_NON_UNIQUE_JWTID
    with sim.client("legacy", legacy_sign_per_request=True) as fresh:
        for _ in range(3):
            assert fresh.check_connection() == 1450


def test_bad_credentials_raise_auth_error_without_the_secret(sim, auth_mode, caplog):
    caplog.set_level(logging.DEBUG, logger="kmeweb.knox")
    secret = "wrong-but-very-secret-value"
    if auth_mode == "oauth":
        config = sim.config("oauth", client_secret=secret)
    else:
        config = sim.config("legacy", client_identifier=secret)
    with KnoxClient(config) as client, pytest.raises(KnoxAuthError) as info:
        client.check_connection()
    assert info.value.status == 401
    for text in (str(info.value), repr(info.value), repr(config), caplog.text):
        assert secret not in text
    assert config.keys_json is None or sim.creds["legacy_keys_json"]["Private"] not in str(
        info.value
    )


def test_config_repr_hides_secrets(sim):
    for mode in ("oauth", "legacy"):
        text = repr(sim.config(mode))
        assert sim.creds["oauth_client_secret"] not in text
        assert sim.creds["legacy_keys_json"]["Private"] not in text
        assert sim.creds["legacy_client_identifier"] not in text


def test_oauth_token_endpoint_answers_oauth_shape(sim):
    resp = sim.http.post(
        sim.url + "/ams/v1/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.creds["oauth_client_id"],
            "client_secret": sim.creds["oauth_client_secret"],
            "scope": "kme.devices:view kme.profiles:manage",
        },
    )
    body = resp.json()
    assert resp.status_code == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 599
    assert body["scope"] == "kme.devices:view kme.profiles:manage"
    bad = sim.http.post(sim.url + "/ams/v1/oauth2/token", data={"grant_type": "password"})
    assert bad.status_code == 400


def test_secrets_echoed_by_the_server_are_scrubbed(sim, caplog):
    caplog.set_level(logging.DEBUG, logger="kmeweb.knox")
    secret = sim.creds["oauth_client_secret"]
    sim.fault(path="/kcs/v1/kme/devices/list", status=503, message=f"bad {secret}", remaining=1)
    sim.fault(path="/kcs/v1/kme/devices/list", status=400, message=f"echo {secret}")
    with sim.client("oauth") as client, pytest.raises(KnoxRejectedError) as info:
        client.check_connection()
    exc = info.value
    assert exc.status == 400
    for text in (str(exc), repr(exc), exc.knox_message, caplog.text):
        assert secret not in text
    assert "[redacted]" in str(exc)
