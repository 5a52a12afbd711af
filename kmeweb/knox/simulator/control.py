"""The simulator's `/_sim/` control endpoints: tenants, reseller uploads, portal edits, faults,
counters and settings (docs/knox.md lists them)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, Response, request

from kmeweb.knox.simulator import errors as codes
from kmeweb.knox.simulator.demo import seed_demo
from kmeweb.knox.simulator.device import provisioning
from kmeweb.knox.simulator.errors import SimError, bad_param
from kmeweb.knox.simulator.responses import bool_arg, json_response
from kmeweb.knox.simulator.state import FaultRule, SimDevice, SimState, Tenant, new_id


def control_blueprint(state: SimState, app: Flask) -> Blueprint:
    """The `/_sim/` blueprint over `state` (demo keys from `app.config`)."""
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
                legacy=bool_arg(data.get("legacy", True)),
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
                auto_approve=bool_arg(data.get("autoApprove", False)),
                default_profile_id=data.get("defaultProfileId"),
                status=data.get("status", "Approved"),
            )
            state.flush()
            return json_response(r.api(), 201)

    def upload_reseller(t: Any, data: dict[str, Any]) -> Any:
        """The reseller an upload names by id or name (a new one by name), else the first."""
        if data.get("resellerId"):
            r = t.resellers.get(data["resellerId"])
        elif data.get("resellerName"):
            r = next((x for x in t.resellers.values() if x.name == data["resellerName"]), None)
            if r is None:
                r = state.add_reseller(t, data["resellerName"])
        else:
            r = next(iter(t.resellers.values()), None)
        if r is None:
            raise SimError(404, codes.RESELLER_NOT_FOUND, "RESELLER_NOT_FOUND")
        return r

    def upload_profile_id(t: Any, data: dict[str, Any]) -> Any:
        """The profile an upload's devices get: by id, or through a profile alias."""
        if not data.get("profileAliasId"):
            return data.get("profileId")
        alias = t.aliases.get(data["profileAliasId"])
        if alias is None:
            raise bad_param("unknown profileAliasId")
        return alias["profileId"]

    @bp.post("/uploads")
    def add_upload() -> Response:
        """A reseller upload of `count` generated devices (and/or explicit `devices`)."""
        data = body()
        with state.lock:
            t = tenant(data)
            r = upload_reseller(t, data)
            profile_id = upload_profile_id(t, data)
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

    @bp.get("/devices/<ident>/boot")
    def boot_device(ident: str) -> Response:
        """What KME hands this device when it boots: its profile and admin-extras bundle."""
        with state.lock:
            t = tenant()
            return json_response(provisioning(t, device(t, ident)))

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
                d.enrolled = bool_arg(data["enrolled"])
            if "approved" in data:
                d.approved = bool_arg(data["approved"])
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
        hangS, remaining, hold, holdMaxS}."""
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
                hold=bool(data.get("hold", False)),
                hold_max_s=float(data.get("holdMaxS", 60)),
            )
        except (TypeError, ValueError) as exc:
            raise bad_param(f"bad fault: {exc}") from None
        with state.lock:
            state.faults.append(rule)
            if rule.hold:
                state.holds[rule.id] = rule
        return json_response(rule.api(), 201)

    @bp.get("/faults/<fault_id>/held")
    def held(fault_id: str) -> Response:
        """How many requests a hold rule has caught so far (they wait until released)."""
        with state.lock:
            rule = state.holds.get(fault_id)
            if rule is None:
                raise bad_param(f"no hold rule {fault_id}")
            return json_response(rule.api())

    @bp.post("/faults/<fault_id>/release")
    def release(fault_id: str) -> Response:
        """Let the requests a hold rule keeps waiting (and any it catches later) go on."""
        with state.lock:
            rule = state.holds.get(fault_id)
            if rule is None:
                raise bad_param(f"no hold rule {fault_id}")
            rule.released.set()
            return json_response(rule.api())

    @bp.delete("/faults")
    def clear_faults() -> Response:
        with state.lock:
            state.faults.clear()
            state.release_holds()
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
            "legacyRequireUniqueRequestJti": ("legacy_require_unique_request_jti", bool_arg),
            "requireJsonContentType": ("require_json_content_type", bool_arg),
            "answerWithKmeIds": ("answer_with_kme_ids", bool_arg),
        }
        with state.lock:
            for key, (attr, conv) in names.items():
                if key in data:
                    setattr(state.settings, attr, conv(data[key]))
            return json_response({k: getattr(state.settings, a) for k, (a, _c) in names.items()})

    @bp.post("/transactions/finish")
    def finish_transactions() -> Response:
        """Make every pending createAsync transaction due now: the tenant's next API call
        finishes them (tests set a long asyncProfileDelayS, then decide when KME is done)."""
        t = tenant(body())
        with state.lock:
            now = time.time()
            for tx_id in t.pending_tx:
                t.transactions[tx_id]["_due"] = now
            return json_response({"due": len(t.pending_tx)})

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
        if bool_arg(data.get("seedDemo", False)):
            out = seed_demo(state, legacy_private_key=app.config["SIM_DEMO_LEGACY_KEY"])
        return json_response(out, 200)

    return bp
