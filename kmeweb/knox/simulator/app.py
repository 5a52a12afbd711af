"""The KME simulator as a Flask app: the Knox paths of `kmeweb.knox.endpoints`, the documented
error body everywhere, both auth schemes, and `/_sim/` control endpoints when enabled."""

from __future__ import annotations

import fnmatch
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from flask import Blueprint, Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from kmeweb.knox import errors as codes
from kmeweb.knox.crypto import JWT_ALGORITHM, KNOX_AUDIENCE, load_private_key, load_public_key
from kmeweb.knox.endpoints import resolve_endpoints
from kmeweb.knox.simulator.state import (
    FaultRule,
    SimDevice,
    SimError,
    SimSettings,
    SimState,
    Tenant,
    bad_param,
    error_body,
    new_id,
)

EXTENSION_KEY = "kme_sim"


class RawJson(str):
    """A response body that is already JSON text."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, RawJson):
        text = str(body)
    else:
        text = "" if body is None else json.dumps(body, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json", headers=headers)


def _error_response(exc: SimError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


def get_state(app: Flask) -> SimState:
    """The SimState behind a simulator app."""
    return app.extensions[EXTENSION_KEY]


def create_simulator(
    state_path: str | None = None,
    enable_control: bool = False,
    max_devices_per_request: int = 1000,
    max_page_size: int = 1000,
    *,
    oauth_token_lifetime_s: float = 599.0,
    legacy_token_lifetime_s: float = 1800.0,
    async_profile_delay_s: float = 0.3,
    legacy_require_unique_request_jti: bool = False,
    seed_demo_data: bool = False,
    encryption_private_key: str | None = None,
    demo_legacy_private_key: str | None = None,
    rng_seed: int | None = None,
    paths: dict[str, str] | None = None,
) -> Flask:
    """Build a simulator app.

    State is in memory, or loaded from and written through to the SQLite file `state_path`.
    `enable_control` mounts `/_sim/` (else those paths answer 404). `seed_demo_data` seeds the
    demo tenant (see `seed_demo`). Keys may be given as PEM or base64 DER to skip RSA key
    generation (tests). Creating the app opens (and may create) the state file.
    """
    settings = SimSettings(
        max_devices_per_request=max_devices_per_request,
        max_page_size=max_page_size,
        oauth_token_lifetime_s=oauth_token_lifetime_s,
        legacy_token_lifetime_s=legacy_token_lifetime_s,
        async_profile_delay_s=async_profile_delay_s,
        legacy_require_unique_request_jti=legacy_require_unique_request_jti,
    )
    enc_key = load_private_key(encryption_private_key) if encryption_private_key else None
    state = SimState(state_path, settings=settings, encryption_key=enc_key, rng_seed=rng_seed)
    app = Flask("kmeweb.knox.simulator")
    app.extensions[EXTENSION_KEY] = state
    app.config["SIM_DEMO_LEGACY_KEY"] = demo_legacy_private_key
    api = _Api(state, resolve_endpoints(paths))
    api.register(app)
    if enable_control:
        app.register_blueprint(_control_blueprint(state, app))
    if seed_demo_data:
        from kmeweb.knox.simulator.demo import seed_demo

        seed_demo(state, legacy_private_key=demo_legacy_private_key)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        names = {404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        code = codes.RESOURCE_NOT_FOUND if status == 404 else status * 10000
        return json_response(
            error_body(
                code, names.get(status, exc.name.upper().replace(" ", "_")), exc.description
            ),
            status,
        )

    @app.errorhandler(SimError)
    def _sim_error(exc: SimError) -> Response:
        return _error_response(exc)

    @app.before_request
    def _faults() -> Response | None:
        if request.path.startswith("/_sim"):
            return None
        g.sim_started = time.monotonic()
        return _apply_faults(state)

    @app.after_request
    def _count(resp: Response) -> Response:
        if not request.path.startswith("/_sim"):
            rule = request.url_rule.rule if request.url_rule else request.path
            with state.lock:
                state.count_endpoint(f"{request.method} {rule}", resp.status_code)
        return resp

    return app


def _apply_faults(state: SimState) -> Response | None:
    path, method = request.path, request.method
    delay = 0.0
    fired: FaultRule | None = None
    with state.lock:
        for rule in list(state.faults):
            if rule.methods and method not in rule.methods:
                continue
            if rule.path.startswith("re:"):
                if not re.search(rule.path[3:], path):
                    continue
            elif not fnmatch.fnmatchcase(path, rule.path):
                continue
            fires = rule.status is not None and fired is None and state.rng.random() < rule.rate
            if not fires and not (rule.latency_ms or rule.hang_s):
                continue
            rule.hits += 1
            delay += rule.latency_ms / 1000.0 + rule.hang_s
            if fires:
                fired = rule
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    state.faults.remove(rule)
    if delay:
        time.sleep(delay)
    if fired is None:
        return None
    status = int(fired.status or 500)
    default = {
        429: (4290000, "TOO_MANY_REQUESTS"),
        500: (codes.INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR"),
        502: (5020000, "BAD_GATEWAY"),
        503: (5030000, "SERVICE_UNAVAILABLE"),
        504: (5040000, "GATEWAY_TIMEOUT"),
    }.get(status, (status * 10000, "INJECTED_FAULT"))
    headers = {}
    if fired.retry_after is not None:
        ra = fired.retry_after
        headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
    body = error_body(fired.code or default[0], fired.message or default[1], "injected fault")
    return json_response(body, status, headers)


# --- the Knox API ----------------------------------------------------------------------------


def _parse_changed_after(value: str) -> int:
    """changedAfter as epoch ms: accepts epoch ms/s digits, ISO 8601, or 24h / 30m / 7d."""
    text = value.strip()
    m = re.fullmatch(r"(\d+)\s*([smhd])", text, re.IGNORECASE)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()]
        when = datetime.now(UTC) - timedelta(seconds=int(m.group(1)) * unit)
        return int(when.timestamp() * 1000)
    if text.isdigit():
        num = int(text)
        return num if num >= 100_000_000_000 else num * 1000
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_param(f"changedAfter not understood: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _page_args(state: SimState) -> tuple[int, int]:
    try:
        page_num = int(request.args.get("pageNum", 0))
        page_size = int(request.args.get("pageSize", 100))
    except ValueError:
        raise bad_param("pageNum and pageSize must be integers") from None
    if page_num < 0 or page_size < 1:
        raise bad_param("pageNum must be >= 0 and pageSize >= 1")
    return page_num, min(page_size, state.settings.max_page_size)


def _bool_arg(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


class _Api:
    def __init__(self, state: SimState, endpoints: dict) -> None:
        self.state = state
        self.endpoints = endpoints
        self._pubkeys: dict[str, Any] = {}

    def register(self, app: Flask) -> None:
        handlers: dict[str, Callable[..., Any]] = {
            "devices_list": self.devices_list,
            "devices_assign": self.devices_assign,
            "devices_unassign_v1": self.devices_unassign_v1,
            "devices_unassign_v2": self.devices_unassign_v2,
            "devices_delete": self.devices_delete,
            "uploads_list": self.uploads_list,
            "uploads_approve": self.uploads_approve,
            "profiles_list": self.profiles_list,
            "profiles_get": self.profiles_get,
            "profiles_create": self.profiles_create,
            "profiles_create_async": self.profiles_create_async,
            "profiles_status": self.profiles_status,
            "profiles_update": self.profiles_update,
            "profiles_delete": self.profiles_delete,
            "reseller_approvals": self.reseller_approvals,
            "reseller_list": self.reseller_list,
            "profile_alias_create": self.alias_create,
            "profile_alias_update": self.alias_update,
            "profile_alias_delete": self.alias_delete,
        }
        for name, (method, path) in self.endpoints.items():
            rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
            methods = [method]
            if name == "devices_unassign_v2":
                methods = sorted({"POST", "PUT"})
            if name == "oauth_token":
                view = self.oauth_token
            elif name == "legacy_access_token":
                view = self.legacy_access_token
            else:
                view = self._wrap(handlers[name])
            app.add_url_rule(rule, endpoint=name, view_func=view, methods=methods)

    # --- plumbing -------------------------------------------------------------------------

    def _wrap(self, handler: Callable[..., Any]) -> Callable[..., Response]:
        state = self.state

        def view(**kwargs: Any) -> Response:
            body = None
            if request.method in ("POST", "PUT", "PATCH"):
                body = request.get_json(silent=True)
                if body is None and request.get_data():
                    raise bad_param("request body is not valid JSON")
                if body is not None and not isinstance(body, dict):
                    raise bad_param("request body must be a JSON object")
            with state.lock:
                tenant, legacy = self._authenticate()
                self._check_customer(tenant, legacy, body)
                state.process_due_transactions(tenant)
                try:
                    result = handler(tenant, body or {}, **kwargs)
                finally:
                    state.flush()
            status = 200
            if isinstance(result, tuple):
                result, status = result
            return json_response(result, status)

        view.__name__ = handler.__name__
        return view

    def _authenticate(self) -> tuple[Tenant, bool]:
        state = self.state
        authz = request.headers.get("Authorization", "")
        api_token = request.headers.get("x-knox-apitoken")
        now = time.time()
        if authz[:7].lower() == "bearer ":
            entry = state.oauth_tokens.get(authz[7:].strip())
            if entry is None:
                raise SimError(401, codes.ACCESS_TOKEN_INVALID, "ACCESS_TOKEN_INVALID")
            cid, exp, _scope = entry
            if exp <= now:
                raise SimError(401, codes.ACCESS_TOKEN_EXPIRED, "ACCESS_TOKEN_EXPIRED")
            return self._tenant(cid), False
        if api_token:
            return self._tenant(self._verify_api_token(api_token, now)), True
        raise SimError(401, codes.ACCESS_TOKEN_BAD_REQUEST, "ACCESS_TOKEN_BAD_REQUEST")

    def _tenant(self, cid: str) -> Tenant:
        t = self.state.tenants.get(cid)
        if t is None:
            raise SimError(404, codes.TENANT_NOT_FOUND, "TENANT_NOT_FOUND")
        return t

    def _public_key(self, pub: str) -> Any:
        key = self._pubkeys.get(pub)
        if key is None:
            key = self._pubkeys[pub] = load_public_key(pub)
        return key

    def _find_legacy(self, pub: str) -> tuple[Tenant, dict[str, str]] | None:
        for t in self.state.tenants.values():
            if pub in t.legacy_keys:
                return t, t.legacy_keys[pub]
        return None

    def _verify_api_token(self, token: str, now: float) -> str:
        state = self.state
        unique = state.settings.legacy_require_unique_request_jti
        cached = None if unique else state.verified_jwts.get(token)
        if cached is not None:
            access, exp = cached
            if exp <= now:
                raise SimError(401, codes.ACCESS_TOKEN_EXPIRED, "ACCESS_TOKEN_EXPIRED")
        else:
            try:
                claims = jwt.decode(token, options={"verify_signature": False})
            except jwt.InvalidTokenError:
                raise SimError(401, codes.ACCESS_TOKEN_INVALID, "ACCESS_TOKEN_INVALID") from None
            access, pub = claims.get("accessToken"), claims.get("publicKey")
            if not access or not pub:
                raise SimError(
                    401,
                    codes.BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED,
                    "BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED",
                )
            if self._find_legacy(pub) is None:
                raise SimError(401, codes.AUTHORIZATION_FAIL, "AUTHORIZATION_FAIL")
            try:
                claims = jwt.decode(
                    token,
                    self._public_key(pub),
                    algorithms=[JWT_ALGORITHM],
                    audience=KNOX_AUDIENCE,
                    options={"require": ["exp", "iat", "jti"]},
                )
            except jwt.ExpiredSignatureError:
                raise SimError(401, codes.ACCESS_TOKEN_EXPIRED, "ACCESS_TOKEN_EXPIRED") from None
            except jwt.InvalidTokenError:
                raise SimError(401, codes.ACCESS_TOKEN_INVALID, "ACCESS_TOKEN_INVALID") from None
            if unique:
                if claims["jti"] in state.request_jtis:
                    raise SimError(400, codes.API_KEY_NON_UNIQUE_JWTID, "API_KEY_NON_UNIQUE_JWTID")
                state.request_jtis.add(claims["jti"])
            else:
                if len(state.verified_jwts) > 10000:
                    state.verified_jwts.clear()
                state.verified_jwts[token] = (access, float(claims["exp"]))
        entry = state.legacy_tokens.get(access)
        if entry is None:
            raise SimError(401, codes.ACCESS_TOKEN_INVALID, "ACCESS_TOKEN_INVALID")
        cid, _pub, exp = entry
        if exp <= now:
            raise SimError(401, codes.ACCESS_TOKEN_EXPIRED, "ACCESS_TOKEN_EXPIRED")
        return cid

    def _check_customer(self, t: Tenant, legacy: bool, body: Any) -> None:
        cid = request.args.get("customerId")
        if cid is None and isinstance(body, dict):
            cid = body.get("customerId")
        if cid is None or cid == "":
            if legacy:
                raise SimError(
                    400,
                    codes.CUSTOMER_ID_INVALID,
                    "CUSTOMER_ID_INVALID",
                    "customerId is required",
                )
            return
        if str(cid) != t.customer_id:
            raise SimError(
                400,
                codes.TENANT_MISMATCH,
                "TENANT_MISMATCH",
                "customerId does not belong to the caller's tenant",
            )

    # --- authentication endpoints ---------------------------------------------------------

    def oauth_token(self) -> Response:
        state = self.state
        form = request.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = client_id or request.authorization.username
            secret = secret or request.authorization.password
        if form.get("grant_type") != "client_credentials":
            body = error_body(
                codes.RESOURCE_INVALID_PARAM, "RESOURCE_INVALID_PARAM", "unsupported grant_type"
            )
            return json_response({**body, "error": "unsupported_grant_type"}, 400)
        scope = form.get("scope") or "kme"
        if any(not s.startswith("kme") for s in scope.split()):
            body = error_body(codes.RESOURCE_INVALID_PARAM, "RESOURCE_INVALID_PARAM", "bad scope")
            return json_response({**body, "error": "invalid_scope"}, 400)
        with state.lock:
            cid = None
            for t in state.tenants.values():
                known = t.oauth_clients.get(client_id or "")
                if known is not None and hmac.compare_digest(known, secret or ""):
                    cid = t.customer_id
                    break
            if cid is None:
                body = error_body(
                    codes.AUTHORIZATION_FAIL, "AUTHORIZATION_FAIL", "invalid client credentials"
                )
                return json_response({**body, "error": "invalid_client"}, 401)
            lifetime = state.settings.oauth_token_lifetime_s
            token = secrets.token_urlsafe(32)
            state.oauth_tokens[token] = (cid, time.time() + lifetime, scope)
        return json_response(
            {
                "access_token": token,
                "scope": scope,
                "expires_in": max(1, int(lifetime)),
                "token_type": "Bearer",
            }
        )

    def legacy_access_token(self) -> Response:
        state = self.state
        body = request.get_json(silent=True) or {}
        client_jwt = body.get("clientIdentifierJwt")
        pub = "".join(str(body.get("base64EncodedStringPublicKey") or "").split())
        if not client_jwt or not pub:
            raise bad_param("clientIdentifierJwt and base64EncodedStringPublicKey are required")
        with state.lock:
            found = self._find_legacy(pub)
            if found is None:
                raise SimError(
                    401, codes.AUTHORIZATION_FAIL, "AUTHORIZATION_FAIL", "unknown public key"
                )
            tenant, reg = found
            try:
                claims = jwt.decode(
                    client_jwt,
                    self._public_key(pub),
                    algorithms=[JWT_ALGORITHM],
                    audience=KNOX_AUDIENCE,
                    options={"require": ["exp", "iat"]},
                )
            except jwt.ExpiredSignatureError:
                raise SimError(
                    401,
                    codes.AUTHORIZATION_FAIL,
                    "AUTHORIZATION_FAIL",
                    "clientIdentifierJwt expired",
                ) from None
            except jwt.InvalidTokenError:
                raise SimError(
                    401, codes.AUTHORIZATION_FAIL, "AUTHORIZATION_FAIL", "bad clientIdentifierJwt"
                ) from None
            ident = claims.get("clientIdentifier")
            if not ident:
                raise SimError(
                    400,
                    codes.BAD_REQUEST_CLIENTIDENTIFIER_CLAIM_NOT_POPULATED,
                    "BAD_REQUEST_CLIENTIDENTIFIER_CLAIM_NOT_POPULATED",
                )
            if not hmac.compare_digest(str(ident), reg["client_identifier"]):
                raise SimError(
                    401, codes.AUTHORIZATION_FAIL, "AUTHORIZATION_FAIL", "unknown client identifier"
                )
            jti = claims.get("jti")
            if not jti or jti in state.used_jtis:
                raise SimError(
                    400,
                    codes.API_KEY_NON_UNIQUE_JWTID,
                    "API_KEY_NON_UNIQUE_JWTID",
                    "jti missing or already used",
                )
            state.used_jtis.add(jti)
            try:
                minutes = float(body.get("validityForAccessTokenInMinutes") or 30)
            except (TypeError, ValueError):
                minutes = 30.0
            lifetime = min(minutes * 60, state.settings.legacy_token_lifetime_s)
            token = secrets.token_urlsafe(32)
            state.legacy_tokens[token] = (tenant.customer_id, pub, time.time() + lifetime)
        return json_response({"accessToken": token})

    # --- devices ---------------------------------------------------------------------------

    def devices_list(self, t: Tenant, body: dict) -> dict:
        page_num, size = _page_args(self.state)
        changed = request.args.get("changedAfter")
        ids = t.ordered_ids() if not changed else t.changed_ids(_parse_changed_after(changed))
        start = page_num * size
        dj = t.device_json
        items = ",".join([dj(i) for i in ids[start : start + size]])
        return RawJson(f'{{"totalCount":{len(ids)},"processingCount":0,"deviceList":[{items}]}}')

    @staticmethod
    def _device_ids(body: dict) -> list[Any]:
        ids = body.get("deviceIds")
        if ids is None:
            raise bad_param("deviceIds is required")
        if not isinstance(ids, list):
            raise bad_param("deviceIds must be a list")
        return ids

    def devices_assign(self, t: Tenant, body: dict) -> dict:
        state = self.state
        profile_id = body.get("profileId")
        if not profile_id:
            raise bad_param("profileId is required")
        details = body.get("deviceDetails")
        if details is None and isinstance(body.get("deviceIds"), list):
            details = [{"deviceId": i} for i in body["deviceIds"]]
        if not isinstance(details, list):
            raise bad_param("deviceDetails must be a list")
        state.check_batch(details)
        if profile_id not in t.profiles:
            raise SimError(
                404,
                codes.BULK_ENROLL_PROFILE_NOT_FOUND,
                "BULK_ENROLL_PROFILE_NOT_FOUND",
                f"profile {profile_id} does not exist",
            )
        success, not_found, invalid, failed = [], [], [], []
        for item in details:
            ident = item.get("deviceId") if isinstance(item, dict) else item
            if not ident:
                invalid.append(str(ident))
                continue
            ident = str(ident)
            d = t.lookup(ident)
            if d is None:
                (invalid if state.classify_missing(ident) == "invalid" else not_found).append(ident)
                continue
            if not d.approved:
                failed.append(
                    _failure(ident, codes.BULK_ENROLL_DEVICE_INVALID, "upload not approved")
                )
                continue
            try:
                user_name = state.decrypt(item["userName"]) if item.get("userName") else None
                token = state.decrypt(item["userToken"]) if item.get("userToken") else None
            except ValueError:
                failed.append(_failure(ident, codes.RSA_DECRYPTION_FAIL, "RSA_DECRYPTION_FAIL"))
                continue
            changed = d.profile_id != profile_id
            d.profile_id = profile_id
            if item.get("userName") is not None and user_name != d.user_name:
                d.user_name, changed = user_name, True
            if item.get("userToken") is not None and token != d.user_token:
                d.user_token, changed = token, True
            if isinstance(item.get("tags"), list) and item["tags"] != d.tags:
                d.tags, changed = [str(x) for x in item["tags"]], True
            if changed:
                state.bump(t, d)
            state.count_device(d.id, "assign", profile_id)
            success.append(ident)
        return {
            "successDeviceList": success,
            "failedDeviceList": failed,
            "notFoundDeviceList": not_found,
            "invalidDeviceList": invalid,
        }

    def _unassign(self, t: Tenant, d: SimDevice) -> None:
        if d.profile_id is not None:
            d.profile_id = None
            self.state.bump(t, d)
        self.state.count_device(d.id, "unassign")

    def devices_unassign_v1(self, t: Tenant, body: dict) -> dict:
        ids = self._device_ids(body)
        self.state.check_batch(ids)
        found = []
        for ident in ids:
            d = t.lookup(str(ident))
            if d is None:
                if self.state.classify_missing(str(ident)) == "invalid":
                    raise SimError(
                        400,
                        codes.BULK_ENROLL_DEVICE_INVALID,
                        "BULK_ENROLL_DEVICE_INVALID",
                        f"Invalid device id {ident}",
                    )
                raise SimError(
                    404, codes.DEVICE_NOT_FOUND, "DEVICE_NOT_FOUND", "Some/All devices don't exist"
                )
            found.append(d)
        for d in found:
            self._unassign(t, d)
        return {}

    def _per_device(
        self, t: Tenant, ids: list, apply: Callable[[SimDevice], None]
    ) -> tuple[list[str], list[str], list[str]]:
        """Apply to each known id; returns (success, not found, invalid) id lists."""
        success: list[str] = []
        not_found: list[str] = []
        invalid: list[str] = []
        for ident in map(str, ids):
            d = t.lookup(ident)
            if d is None:
                missing = self.state.classify_missing(ident)
                (invalid if missing == "invalid" else not_found).append(ident)
                continue
            apply(d)
            success.append(ident)
        return success, not_found, invalid

    def devices_unassign_v2(self, t: Tenant, body: dict) -> dict:
        ids = self._device_ids(body)
        self.state.check_batch(ids)
        success, not_found, invalid = self._per_device(t, ids, lambda d: self._unassign(t, d))
        return {
            "successDeviceList": success,
            "notFoundDeviceList": not_found,
            "invalidDeviceList": invalid,
        }

    def devices_delete(self, t: Tenant, body: dict) -> dict:
        devices = body.get("devices")
        ids = None
        if isinstance(devices, dict):
            ids = devices.get("imeiOrSerials")
            if ids is None:
                ids = devices.get("deviceIds")
        if ids is None:
            ids = body.get("deviceIds")
        if not isinstance(ids, list):
            raise bad_param("devices.imeiOrSerials must be a list")
        self.state.check_batch(ids)

        def delete(d: SimDevice) -> None:
            self.state.delete_device(t, d)
            self.state.count_device(d.id, "delete")

        success, not_found, invalid = self._per_device(t, ids, delete)
        return {
            "successDeviceList": success,
            "failedDeviceList": [],
            "notFoundDeviceList": not_found,
            "invalidDeviceList": invalid,
        }

    # --- uploads and resellers -------------------------------------------------------------

    def uploads_list(self, t: Tenant, body: dict) -> dict:
        page_num, size = _page_args(self.state)
        uploads = list(t.uploads.values())
        chunk = uploads[page_num * size : (page_num + 1) * size]
        return {"totalCount": len(uploads), "uploadList": [t.upload_api(u) for u in chunk]}

    def uploads_approve(self, t: Tenant, body: dict) -> dict:
        ids = body.get("uploadIds")
        if ids is None and body.get("uploadId"):
            ids = [body["uploadId"]]
        if not isinstance(ids, list) or not ids:
            raise bad_param("uploadIds must be a non-empty list")
        success, not_found = [], []
        for uid in map(str, ids):
            upload = t.uploads.get(uid)
            if upload is None:
                not_found.append(uid)
                continue
            self.state.approve_upload(t, upload)
            success.append(uid)
        return {"successUploadList": success, "notFoundUploadList": not_found}

    def reseller_list(self, t: Tenant, body: dict) -> dict:
        page_num, size = _page_args(self.state)
        items = list(t.resellers.values())[page_num * size : (page_num + 1) * size]
        return {"totalCount": len(t.resellers), "resellerList": [r.api() for r in items]}

    def reseller_approvals(self, t: Tenant, body: dict) -> dict:
        rid = body.get("resellerId")
        if not rid:
            raise bad_param("resellerId is required")
        r = t.resellers.get(str(rid))
        if r is None:
            raise SimError(404, codes.RESELLER_NOT_FOUND, "RESELLER_NOT_FOUND")
        if "defaultProfileId" in body:
            pid = body["defaultProfileId"]
            if pid and pid not in t.profiles:
                raise SimError(
                    404, codes.BULK_ENROLL_PROFILE_NOT_FOUND, "BULK_ENROLL_PROFILE_NOT_FOUND"
                )
            r.default_profile_id = pid or None
        if "autoApprove" in body:
            r.auto_approve = _bool_arg(body["autoApprove"])
        r.status = "Approved" if _bool_arg(body.get("approve", True)) else "Rejected"
        self.state.touch("reseller", t.customer_id, r.reseller_id, r)
        return r.api()

    def _alias_body(self, t: Tenant, body: dict) -> tuple[str, str, str | None]:
        rid, pid = body.get("resellerId"), body.get("profileId")
        if not rid or not pid:
            raise bad_param("resellerId and profileId are required")
        if str(rid) not in t.resellers:
            raise SimError(404, codes.RESELLER_NOT_FOUND, "RESELLER_NOT_FOUND")
        if str(pid) not in t.profiles:
            raise SimError(
                404, codes.BULK_ENROLL_PROFILE_NOT_FOUND, "BULK_ENROLL_PROFILE_NOT_FOUND"
            )
        return str(rid), str(pid), body.get("profileAliasName")

    def alias_create(self, t: Tenant, body: dict) -> dict:
        rid, pid, name = self._alias_body(t, body)
        for a in t.aliases.values():
            if a["resellerId"] == rid and a["profileId"] == pid:
                raise SimError(
                    409,
                    codes.RESELLER_ASSOCIATION_ALREADY_EXISTS,
                    "RESELLER_ASSOCIATION_ALREADY_EXISTS",
                )
        alias = {
            "profileAliasId": new_id(16),
            "resellerId": rid,
            "profileId": pid,
            "profileAliasName": name or t.profiles[pid]["name"],
        }
        t.aliases[alias["profileAliasId"]] = alias
        self.state.touch("alias", t.customer_id, alias["profileAliasId"], alias)
        return alias

    def alias_update(self, t: Tenant, body: dict, alias_id: str) -> dict:
        alias = t.aliases.get(alias_id)
        if alias is None:
            raise SimError(404, codes.RESOURCE_NOT_FOUND, "RESOURCE_NOT_FOUND", "no such alias")
        rid, pid, name = self._alias_body(t, body)
        alias.update(
            resellerId=rid, profileId=pid, profileAliasName=name or alias["profileAliasName"]
        )
        self.state.touch("alias", t.customer_id, alias_id, alias)
        return alias

    def alias_delete(self, t: Tenant, body: dict, alias_id: str) -> dict:
        if t.aliases.pop(alias_id, None) is None:
            raise SimError(404, codes.RESOURCE_NOT_FOUND, "RESOURCE_NOT_FOUND", "no such alias")
        self.state.forget("alias", t.customer_id, alias_id)
        return {}

    # --- profiles --------------------------------------------------------------------------

    def _profile_or_404(self, t: Tenant, profile_id: str) -> dict:
        prof = t.profiles.get(profile_id)
        if prof is None:
            raise SimError(
                404,
                codes.BULK_ENROLL_PROFILE_NOT_FOUND,
                "BULK_ENROLL_PROFILE_NOT_FOUND",
                f"profile {profile_id} does not exist",
            )
        return prof

    def profiles_list(self, t: Tenant, body: dict) -> dict:
        page_num, size = _page_args(self.state)
        reseller = request.args.get("resellerId")
        items = list(t.profiles.values())[page_num * size : (page_num + 1) * size]
        if reseller:
            aliases = [a for a in t.aliases.values() if a["resellerId"] == reseller]
            items = [
                {**p, "profileAlias": [a for a in aliases if a["profileId"] == p["id"]]}
                for p in items
            ]
        return {"totalCount": len(t.profiles), "profileList": items}

    def profiles_get(self, t: Tenant, body: dict, profile_id: str) -> dict:
        return self._profile_or_404(t, profile_id)

    def profiles_create(self, t: Tenant, body: dict) -> dict:
        prof = self.state.validate_profile(t, body, None)
        return self.state.put_profile(t, prof)

    def profiles_create_async(self, t: Tenant, body: dict) -> dict:
        state = self.state
        prof = state.validate_profile(t, body, None)
        for tx in t.transactions.values():
            if (
                tx["state"] == "InProgress"
                and tx["profileName"].casefold() == prof["name"].casefold()
            ):
                raise SimError(
                    409,
                    codes.BULK_ENROLL_PROFILE_NAME_CONFLICT,
                    "BULK_ENROLL_PROFILE_NAME_CONFLICT",
                    "a profile with this name is being created",
                )
        tx = {
            "tenantId": t.customer_id,
            "transactionId": uuid.uuid4().hex,
            "type": "Post",
            "state": "InProgress",
            "profileId": None,
            "profileName": prof["name"],
            "_due": time.time() + state.settings.async_profile_delay_s,
            "_body": prof,
        }
        t.transactions[tx["transactionId"]] = tx
        t.pending_tx.add(tx["transactionId"])
        state.touch("tx", t.customer_id, tx["transactionId"], tx)
        return {"transactionId": tx["transactionId"]}

    def profiles_status(self, t: Tenant, body: dict) -> dict:
        page_num, size = _page_args(self.state)
        wanted = request.args.get("transactionId")
        txs = [
            self.state.tx_api(tx)
            for tx in t.transactions.values()
            if not wanted or tx["transactionId"] == wanted
        ]
        total = len(txs)
        return {
            "profiles": {
                "totalCount": total,
                "totalPage": max(1, -(-total // size)),
                "pageNum": page_num,
                "transactions": txs[page_num * size : (page_num + 1) * size],
            }
        }

    def profiles_update(self, t: Tenant, body: dict, profile_id: str) -> dict:
        self._profile_or_404(t, profile_id)
        prof = self.state.validate_profile(t, body, profile_id)
        return self.state.put_profile(t, prof, profile_id)

    def profiles_delete(self, t: Tenant, body: dict, profile_id: str) -> dict:
        state = self.state
        prof = self._profile_or_404(t, profile_id)
        del t.profiles[profile_id]
        t.profile_names.pop(prof["name"].casefold(), None)
        t.device_changed()
        state.forget("profile", t.customer_id, profile_id)
        for d in t.devices.values():
            if d.profile_id == profile_id:
                d.profile_id = None
                state.bump(t, d)
        for alias_id in [a for a, v in t.aliases.items() if v["profileId"] == profile_id]:
            del t.aliases[alias_id]
            state.forget("alias", t.customer_id, alias_id)
        for r in t.resellers.values():
            if r.default_profile_id == profile_id:
                r.default_profile_id = None
                state.touch("reseller", t.customer_id, r.reseller_id, r)
        return {}


def _failure(ident: str, code: int, message: str) -> dict[str, Any]:
    return {"deviceId": ident, "code": code, "message": message}


# --- control endpoints -----------------------------------------------------------------------


def _control_blueprint(state: SimState, app: Flask) -> Blueprint:
    from kmeweb.knox.simulator.demo import seed_demo

    bp = Blueprint("sim_control", __name__, url_prefix="/_sim")

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    def tenant(data: dict[str, Any] | None = None) -> Tenant:
        cid = request.args.get("customerId") or (data or {}).get("customerId")
        if not cid:
            if state.demo and state.demo["customer_id"] in state.tenants:
                cid = state.demo["customer_id"]
            elif state.tenants:
                cid = next(iter(state.tenants))
        t = state.tenants.get(cid or "")
        if t is None:
            raise SimError(404, codes.TENANT_NOT_FOUND, "TENANT_NOT_FOUND", "no such tenant")
        return t

    def device(t: Tenant, ident: str) -> SimDevice:
        d = t.lookup(ident)
        if d is None:
            raise SimError(404, codes.DEVICE_NOT_FOUND, "DEVICE_NOT_FOUND")
        return d

    @bp.get("/credentials")
    def credentials() -> Response:
        """Demo credentials, the encryption key and every tenant's credentials."""
        with state.lock:
            return json_response(
                {
                    "demo": state.demo,
                    "encryption_public_key": state.encryption_public_key_b64(),
                    "tenants": [state.tenant_credentials(t) for t in state.tenants.values()],
                }
            )

    @bp.post("/tenants")
    def add_tenant() -> Response:
        """Register a tenant (or more credentials for one)."""
        data = body()
        with state.lock:
            creds = state.add_tenant(
                data.get("customerId"),
                data.get("name"),
                oauth_client_id=data.get("clientId"),
                oauth_client_secret=data.get("clientSecret"),
                legacy_public_key=data.get("publicKey"),
                client_identifier=data.get("clientIdentifier"),
                legacy=_bool_arg(data.get("legacy", True)),
            )
            state.flush()
            creds["encryption_public_key"] = state.encryption_public_key_b64()
        return json_response(creds, 201)

    @bp.post("/seed-demo")
    def seed() -> Response:
        """Seed the demo tenant (idempotent); answers the demo credentials."""
        return json_response(seed_demo(state, legacy_private_key=app.config["SIM_DEMO_LEGACY_KEY"]))

    @bp.post("/resellers")
    def add_reseller() -> Response:
        data = body()
        with state.lock:
            t = tenant(data)
            r = state.add_reseller(
                t,
                data.get("name") or data.get("resellerName") or "Reseller",
                reseller_id=data.get("resellerId"),
                auto_approve=_bool_arg(data.get("autoApprove", False)),
                default_profile_id=data.get("defaultProfileId"),
                status=data.get("status", "Approved"),
            )
            state.flush()
            return json_response(r.api(), 201)

    @bp.post("/uploads")
    def add_upload() -> Response:
        """A reseller upload of `count` generated devices (and/or explicit `devices`)."""
        data = body()
        with state.lock:
            t = tenant(data)
            r = None
            if data.get("resellerId"):
                r = t.resellers.get(data["resellerId"])
            elif data.get("resellerName"):
                r = next((x for x in t.resellers.values() if x.name == data["resellerName"]), None)
                if r is None:
                    r = state.add_reseller(t, data["resellerName"])
            elif t.resellers:
                r = next(iter(t.resellers.values()))
            if r is None:
                raise SimError(404, codes.RESELLER_NOT_FOUND, "RESELLER_NOT_FOUND")
            profile_id = data.get("profileId")
            if data.get("profileAliasId"):
                alias = t.aliases.get(data["profileAliasId"])
                if alias is None:
                    raise bad_param("unknown profileAliasId")
                profile_id = alias["profileId"]
            try:
                count = int(data.get("count", 0))
            except (TypeError, ValueError):
                raise bad_param("count must be an integer") from None
            upload, created = state.add_upload(
                t,
                r,
                count,
                devices=data.get("devices") or (),
                order_no=data.get("orderNo"),
                profile_id=profile_id,
            )
            state.flush()
            out = t.upload_api(upload)
            if len(created) <= 10000:
                out["devices"] = [
                    {"id": d.id, "mei": d.mei, "serialNumber": d.serial, "model": d.model}
                    for d in created
                ]
            return json_response(out, 201)

    @bp.get("/devices/<ident>")
    def get_device(ident: str) -> Response:
        """Everything about one device, including its decrypted userToken and counters."""
        with state.lock:
            t = tenant()
            d = device(t, ident)
            out = t.device_api(d)
            out["userToken"] = d.user_token
            out["approved"] = d.approved
            out["counters"] = state.device_counters.get(d.id, {})
            return json_response(out)

    @bp.patch("/devices/<ident>")
    def edit_device(ident: str) -> Response:
        """Edit a device as an admin would in the Samsung portal (bumps updateTime)."""
        data = body()
        with state.lock:
            t = tenant(data)
            d = device(t, ident)
            if "profileId" in data:
                pid = data["profileId"]
                if pid and pid not in t.profiles:
                    raise SimError(
                        404, codes.BULK_ENROLL_PROFILE_NOT_FOUND, "BULK_ENROLL_PROFILE_NOT_FOUND"
                    )
                d.profile_id = pid or None
            for key, attr in (
                ("userName", "user_name"),
                ("userToken", "user_token"),
                ("mac", "mac"),
            ):
                if key in data:
                    setattr(d, attr, data[key])
            if "tags" in data:
                d.tags = [str(x) for x in data["tags"] or []]
            if "enrolled" in data:
                d.enrolled = _bool_arg(data["enrolled"])
            if "approved" in data:
                d.approved = _bool_arg(data["approved"])
            state.bump(t, d)
            state.flush()
            return json_response(t.device_api(d))

    @bp.patch("/profiles/<profile_id>")
    def edit_profile(profile_id: str) -> Response:
        """Edit a profile as in the Samsung portal (merged, validated, bumps updateTime)."""
        data = body()
        with state.lock:
            t = tenant(data)
            prof = t.profiles.get(profile_id)
            if prof is None:
                raise SimError(
                    404, codes.BULK_ENROLL_PROFILE_NOT_FOUND, "BULK_ENROLL_PROFILE_NOT_FOUND"
                )
            merged = {k: v for k, v in prof.items() if k not in ("createTime", "updateTime")}
            merged.update({k: v for k, v in data.items() if k != "customerId"})
            new = state.validate_profile(t, merged, profile_id)
            out = state.put_profile(t, new, profile_id)
            state.flush()
            return json_response(out)

    @bp.get("/faults")
    def list_faults() -> Response:
        with state.lock:
            return json_response([f.api() for f in state.faults])

    @bp.post("/faults")
    def add_fault() -> Response:
        """Inject a fault: {path, methods, status, rate, code, message, retryAfter, latencyMs,
        hangS, remaining}."""
        data = body()
        try:
            rule = FaultRule(
                id=new_id(8),
                path=str(data.get("path", "*")),
                methods=[m.upper() for m in data["methods"]] if data.get("methods") else None,
                status=int(data["status"]) if data.get("status") is not None else None,
                rate=float(data.get("rate", 1.0)),
                code=int(data["code"]) if data.get("code") is not None else None,
                message=data.get("message"),
                retry_after=float(data["retryAfter"])
                if data.get("retryAfter") is not None
                else None,
                latency_ms=float(data.get("latencyMs", 0)),
                hang_s=float(data.get("hangS", 0)),
                remaining=int(data["remaining"]) if data.get("remaining") is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise bad_param(f"bad fault: {exc}") from None
        with state.lock:
            state.faults.append(rule)
        return json_response(rule.api(), 201)

    @bp.delete("/faults")
    def clear_faults() -> Response:
        with state.lock:
            state.faults.clear()
        return json_response({}, 200)

    @bp.delete("/faults/<fault_id>")
    def delete_fault(fault_id: str) -> Response:
        with state.lock:
            state.faults[:] = [f for f in state.faults if f.id != fault_id]
        return json_response({}, 200)

    @bp.get("/counters")
    def counters() -> Response:
        """Calls per endpoint (with status counts) and per-device operation counters."""
        wanted = request.args.getlist("deviceId")
        with state.lock:
            devs = state.device_counters
            if wanted:
                t = tenant()
                ids = [(t.lookup(w).id if t.lookup(w) else w) for w in wanted]
                devs = {i: devs.get(i, {}) for i in ids}
            return json_response({"endpoints": state.endpoint_counters, "devices": devs})

    @bp.delete("/counters")
    def reset_counters() -> Response:
        with state.lock:
            state.endpoint_counters.clear()
            state.device_counters.clear()
        return json_response({}, 200)

    @bp.post("/settings")
    def settings() -> Response:
        """Change limits and token lifetimes at run time."""
        data = body()
        names = {
            "maxDevicesPerRequest": ("max_devices_per_request", int),
            "maxPageSize": ("max_page_size", int),
            "oauthTokenLifetimeS": ("oauth_token_lifetime_s", float),
            "legacyTokenLifetimeS": ("legacy_token_lifetime_s", float),
            "asyncProfileDelayS": ("async_profile_delay_s", float),
            "legacyRequireUniqueRequestJti": ("legacy_require_unique_request_jti", _bool_arg),
        }
        with state.lock:
            for key, (attr, conv) in names.items():
                if key in data:
                    setattr(state.settings, attr, conv(data[key]))
            return json_response({k: getattr(state.settings, a) for k, (a, _c) in names.items()})

    @bp.post("/tokens/expire")
    def expire_tokens() -> Response:
        """Expire every issued access token (OAuth and legacy) now."""
        with state.lock:
            for tok, (cid, _exp, scope) in list(state.oauth_tokens.items()):
                state.oauth_tokens[tok] = (cid, 0.0, scope)
            for tok, (cid, pub, _exp) in list(state.legacy_tokens.items()):
                state.legacy_tokens[tok] = (cid, pub, 0.0)
            state.verified_jwts.clear()
        return json_response({}, 200)

    @bp.get("/stats")
    def stats() -> Response:
        with state.lock:
            return json_response(
                {
                    cid: {
                        "devices": len(t.devices),
                        "uploads": len(t.uploads),
                        "profiles": len(t.profiles),
                        "resellers": len(t.resellers),
                        "aliases": len(t.aliases),
                    }
                    for cid, t in state.tenants.items()
                }
            )

    @bp.post("/reset")
    def reset() -> Response:
        """Forget everything; with {"seedDemo": true} seed the demo tenant again."""
        data = body()
        with state.lock:
            state.reset()
        out: dict[str, Any] = {}
        if _bool_arg(data.get("seedDemo", False)):
            out = seed_demo(state, legacy_private_key=app.config["SIM_DEMO_LEGACY_KEY"])
        return json_response(out, 200)

    return bp
