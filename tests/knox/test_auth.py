"""Both authentication schemes: token caching, renewal, refusal, and what the simulator checks."""

from __future__ import annotations

import json
import logging
import time
import uuid

import jwt
import pytest

from kmeweb.knox import (
    KnoxAuthError,
    KnoxClient,
    KnoxConfig,
    KnoxConfigError,
    KnoxRejectedError,
)
from kmeweb.knox.crypto import generate_private_key, load_key_pair, sign_knox_jwt
from kmeweb.knox.errors import (
    ACCESS_TOKEN_BAD_REQUEST,
    API_KEY_NON_UNIQUE_JWTID,
    CUSTOMER_ID_INVALID,
    TENANT_MISMATCH,
)
from tests.knox_config import client_config

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
    with KnoxClient(client_config(creds, sim.url, "oauth")) as client:
        assert client.check_connection() == 3


def test_missing_token_is_401_with_documented_body(sim):
    resp = sim.http.get(sim.url + "/kcs/v1/kme/devices/list")
    assert resp.status_code == 401
    body = resp.json()
    assert set(body) == {"errorId", "code", "message", "data"}
    assert body["code"] == ACCESS_TOKEN_BAD_REQUEST


def test_default_client_survives_a_server_that_refuses_reused_jtis(make_sim):
    sim = make_sim(legacy_require_unique_request_jti=True)
    with sim.client("legacy") as client:
        for _ in range(4):
            assert client.check_connection() == 1450
    # The second call reused the signed token once, was refused with 4002250, and was sent
    # again with a fresh jti; from then on every request was signed afresh.
    assert sim.calls(LIST) == {"calls": 5, "200": 4, "400": 1}
    assert sim.calls(LEGACY) == {"calls": 1, "200": 1}


def test_sign_per_request_never_reuses_a_jti(make_sim):
    sim = make_sim(legacy_require_unique_request_jti=True)
    with sim.client("legacy", legacy_sign_per_request=True) as client:
        for _ in range(3):
            assert client.check_connection() == 1450
    assert sim.calls(LIST) == {"calls": 3, "200": 3}


def test_reused_client_identifier_jti_is_signed_again_once(sim):
    sim.fault(
        path="/ams/v1/users/accesstoken",
        status=400,
        code=API_KEY_NON_UNIQUE_JWTID,
        message="API_KEY_NON_UNIQUE_JWTID",
        remaining=1,
    )
    with sim.client("legacy") as client:
        assert client.check_connection() == 1450
    assert sim.calls(LEGACY) == {"calls": 2, "400": 1, "200": 1}


def test_a_server_refusing_every_jti_is_not_retried_forever(sim):
    sim.fault(path="/ams/v1/users/accesstoken", status=400, code=API_KEY_NON_UNIQUE_JWTID)
    with sim.client("legacy") as client, pytest.raises(KnoxAuthError) as info:
        client.check_connection()
    assert info.value.code == API_KEY_NON_UNIQUE_JWTID
    assert sim.calls(LEGACY) == {"calls": 2, "400": 2}


def test_keys_json_alone_is_enough_and_an_explicit_identifier_wins(sim):
    keys_json = sim.creds["legacy_keys_json"]
    assert keys_json["Identifier"] == sim.creds["legacy_client_identifier"]
    config = KnoxConfig(
        base_url=sim.url,
        auth_mode="legacy",
        keys_json=json.dumps(keys_json),  # the file's text, as downloaded
        customer_id=sim.creds["customer_id"],
    )
    with KnoxClient(config) as client:
        assert client.check_connection() == 1450
    wrong = sim.config("legacy", client_identifier="not-the-registered-identifier")
    with KnoxClient(wrong) as client, pytest.raises(KnoxAuthError):
        client.check_connection()
    without = {k: v for k, v in keys_json.items() if k != "Identifier"}
    with pytest.raises(KnoxConfigError):
        KnoxClient(sim.config("legacy", keys_json=without))


def test_oauth_token_url_is_samsungs_whatever_the_api_base():
    regional = KnoxConfig(
        base_url="https://eu-kcs-api.samsungknox.com", client_id="c", client_secret="s"
    )
    assert regional.effective_token_url == "https://api.samsungknox.com/ams/v1/oauth2/token"
    own = KnoxConfig(base_url="https://eu-kcs-api.samsungknox.com", token_url="http://sim/t")
    assert own.effective_token_url == "http://sim/t"


def test_oauth_credentials_go_only_to_the_token_url(make_sim, sim):
    token_host = make_sim()
    config = sim.config("oauth", token_url=token_host.url + "/ams/v1/oauth2/token")
    with KnoxClient(config) as client, pytest.raises(KnoxAuthError):
        client.check_connection()  # token_host issued a token sim does not know
    assert token_host.calls(OAUTH) == {"calls": 2, "200": 2}  # one renewal after the 401
    assert sim.calls(OAUTH) == {"calls": 0}
    assert sim.calls(LIST) == {"calls": 2, "401": 2}


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


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token-anyone-issued"},
        {"x-knox-apitoken": "garbage"},
        "signed by an unregistered key",
    ],
)
def test_unknown_or_garbage_token_is_401_access_token_bad_request(sim, headers):
    if isinstance(headers, str):
        key = generate_private_key()
        claims = {"accessToken": "made-up", "publicKey": "AAAA"}
        headers = {"x-knox-apitoken": sign_knox_jwt(claims, key)}
    resp = sim.http.get(
        sim.url + "/kcs/v1/kme/devices/list",
        params={"customerId": sim.creds["customer_id"]},
        headers=headers,
    )
    assert resp.status_code == 401
    assert resp.json()["code"] == ACCESS_TOKEN_BAD_REQUEST
