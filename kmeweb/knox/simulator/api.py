"""The KME cloud API as the simulator serves it (kme-api.md sections 1 to 3): authentication,
devices, uploads, resellers, profiles. Every handler runs under the state lock."""

from __future__ import annotations

import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from flask import Flask, Response, request

from kmeweb.knox.simulator import errors as codes
from kmeweb.knox.simulator import keys
from kmeweb.knox.simulator.errors import SimError, bad_param, error_body
from kmeweb.knox.simulator.responses import RawJson, bool_arg, json_response
from kmeweb.knox.simulator.state import SimDevice, SimState, Tenant, new_id


def _bad_token(data: str) -> SimError:
    """401 ACCESS_TOKEN_BAD_REQUEST (4012250): the documented answer to a token it cannot use."""
    return SimError(401, codes.ACCESS_TOKEN_BAD_REQUEST, "ACCESS_TOKEN_BAD_REQUEST", data)


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


class KmeApi:
    """The KME API handlers over one SimState; `register` adds them to a Flask app."""

    def __init__(
        self, state: SimState, route_table: dict[str, tuple[tuple[str, ...], str]]
    ) -> None:
        self.state = state
        self.routes = route_table
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
        for name, (methods, rule) in self.routes.items():
            if name == "oauth_token":
                view = self.oauth_token
            elif name == "legacy_access_token":
                view = self.legacy_access_token
            else:
                view = self._wrap(handlers[name])
            app.add_url_rule(rule, endpoint=name, view_func=view, methods=list(methods))

    def _wrap(self, handler: Callable[..., Any]) -> Callable[..., Response]:
        state = self.state

        def view(**kwargs: Any) -> Response:
            if state.settings.require_json_content_type and request.mimetype != "application/json":
                # kme-api.md 1a step 4: `Content-Type: application/json` on every call.
                raise bad_param("Content-Type must be application/json")
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
                raise _bad_token("unknown access token")
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
            key = self._pubkeys[pub] = keys.read_public(pub)
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
                claims = keys.unverified_claims(token)
            except jwt.InvalidTokenError:
                raise _bad_token("x-knox-apitoken is not a signed token") from None
            access, pub = claims.get("accessToken"), claims.get("publicKey")
            if not access or not pub:
                raise SimError(
                    401,
                    codes.BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED,
                    "BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED",
                )
            if self._find_legacy(pub) is None:
                raise _bad_token("signed with a key nobody registered")
            try:
                claims = keys.verify(token, self._public_key(pub), ["exp", "iat", "jti"])
            except jwt.ExpiredSignatureError:
                raise SimError(401, codes.ACCESS_TOKEN_EXPIRED, "ACCESS_TOKEN_EXPIRED") from None
            except jwt.InvalidTokenError:
                raise _bad_token("signature or claims do not verify") from None
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
            raise _bad_token("unknown access token")
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
                claims = keys.verify(client_jwt, self._public_key(pub), ["exp", "iat"])
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
            success.append(d.id if state.settings.answer_with_kme_ids else ident)
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
            success.append(d.id if self.state.settings.answer_with_kme_ids else ident)
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

    def uploads_list(self, t: Tenant, body: dict) -> dict:
        page_num, size = _page_args(self.state)
        uploads = list(t.uploads.values())
        chunk = uploads[page_num * size : (page_num + 1) * size]
        return {"totalCount": len(uploads), "uploadList": [t.upload_api(u) for u in chunk]}

    def uploads_approve(self, t: Tenant, body: dict) -> dict:
        """All or nothing [body Unverified]: one unknown upload id refuses the batch with 404
        RESOURCE_NOT_FOUND; otherwise `{"approvedUploadIds": [...]}`."""
        ids = body.get("uploadIds")
        if ids is None and body.get("uploadId"):
            ids = [body["uploadId"]]
        if not isinstance(ids, list) or not ids:
            raise bad_param("uploadIds must be a non-empty list")
        ids = [str(u) for u in ids]
        unknown = [u for u in ids if u not in t.uploads]
        if unknown:
            raise SimError(
                404, codes.RESOURCE_NOT_FOUND, "RESOURCE_NOT_FOUND", f"no upload {unknown[0]}"
            )
        for uid in ids:
            self.state.approve_upload(t, t.uploads[uid])
        return {"approvedUploadIds": ids}

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
            r.auto_approve = bool_arg(body["autoApprove"])
        r.status = "Approved" if bool_arg(body.get("approve", True)) else "Rejected"
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
