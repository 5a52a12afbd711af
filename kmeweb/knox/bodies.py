"""Build Knox request bodies and parse Knox response bodies, one function each.

Most KME request and response bodies are [Unverified] (kme-api.md): Samsung's spec was not
available. Every shape lives here so a correction after checking the live Swagger touches only
this module. `customerId` is added by the client, not here. Parsers are tolerant: they accept
the name variants listed and an optional `{"data": ...}` wrapper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kmeweb.knox.types import (
    PROFILE_API_FIELDS,
    BatchResult,
    Device,
    DevicePage,
    Profile,
    ProfileAlias,
    Reseller,
    Transaction,
    Upload,
    first,
    to_epoch_ms,
)


def _unwrap(body: Any) -> Any:
    if isinstance(body, Mapping) and len(body) == 1:
        for key in ("data", "result", "response"):
            if key in body and isinstance(body[key], Mapping | list):
                return body[key]
    return body


def _list(body: Any, *names: str) -> list[Any]:
    body = _unwrap(body)
    if isinstance(body, list):
        return body
    if not isinstance(body, Mapping):
        return []
    value = first(body, *names)
    return value if isinstance(value, list) else []


def _total(body: Any, fallback: int) -> int:
    body = _unwrap(body)
    if isinstance(body, Mapping):
        value = first(body, "totalCount", "total", "totalElements")
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    return fallback


def format_changed_after(when: datetime, fmt: str = "epoch_ms") -> str:
    """The `changedAfter` query value [Unverified syntax]: epoch ms (default) or ISO 8601."""
    if fmt == "iso":
        return when.isoformat()
    return str(to_epoch_ms(when))


def build_page_params(page_num: int, page_size: int) -> dict[str, Any]:
    """Query parameters of a paged list call (0-based `pageNum`)."""
    return {"pageNum": page_num, "pageSize": page_size}


def parse_device_page(body: Any, page_num: int) -> DevicePage:
    """A `devices/list` response: `{"totalCount", "processingCount", "deviceList": [...]}`."""
    items = _list(body, "deviceList", "devices", "list")
    devices = [Device.from_api(d) for d in items if isinstance(d, Mapping)]
    inner = _unwrap(body)
    processing = inner.get("processingCount") if isinstance(inner, Mapping) else 0
    return DevicePage(
        devices=devices,
        total_count=_total(body, len(devices)),
        page_num=page_num,
        processing_count=int(processing or 0),
    )


def parse_upload_page(body: Any) -> tuple[list[Upload], int]:
    """A `devices/uploads/list` response [Unverified]: `{"totalCount", "uploadList": [...]}`."""
    items = _list(body, "uploadList", "uploads", "list")
    uploads = [Upload.from_api(u) for u in items if isinstance(u, Mapping)]
    return uploads, _total(body, len(uploads))


def parse_profile_page(body: Any) -> tuple[list[Profile], int]:
    """A `profiles/list` response [Unverified]: `{"totalCount", "profileList": [...]}`."""
    items = _list(body, "profileList", "profiles", "list")
    profiles = [Profile.from_api(p) for p in items if isinstance(p, Mapping)]
    return profiles, _total(body, len(profiles))


def parse_reseller_page(body: Any) -> tuple[list[Reseller], int]:
    """A reseller list response [Unverified]: `{"totalCount", "resellerList": [...]}`."""
    items = _list(body, "resellerList", "resellers", "list")
    resellers = [Reseller.from_api(r) for r in items if isinstance(r, Mapping)]
    return resellers, _total(body, len(resellers))


def build_assign_body(profile_id: str, details: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`assignProfile` body [Unverified beyond `deviceDetails`/`userName`/`userToken`].

    `details` items: {"device_id", "user_name" (encrypted or None), "user_token" (encrypted or
    None)}; absent credentials are left out.
    """
    out = []
    for d in details:
        item: dict[str, Any] = {"deviceId": d["device_id"]}
        if d.get("user_name") is not None:
            item["userName"] = d["user_name"]
        if d.get("user_token") is not None:
            item["userToken"] = d["user_token"]
        out.append(item)
    return {"profileId": profile_id, "deviceDetails": out}


def build_unassign_body(device_ids: Sequence[str]) -> dict[str, Any]:
    """`unassignProfile` body (v1 and v2): `{"deviceIds": [...]}` [Doc]."""
    return {"deviceIds": list(device_ids)}


def build_delete_body(device_ids: Sequence[str]) -> dict[str, Any]:
    """`devices/delete` body: `{"devices": {"imeiOrSerials": [...]}}` [Code]."""
    return {"devices": {"imeiOrSerials": list(device_ids)}}


_BATCH_LISTS = (
    ("succeeded", ("successDeviceList", "successList", "unassignedDeviceList")),
    ("not_found", ("notFoundDeviceList", "notFoundList", "nonExistentDeviceList")),
    ("invalid", ("invalidDeviceList", "invalidList", "invalidDeviceIdList")),
    ("failed", ("failedDeviceList", "failedList", "failureDeviceList")),
)
_ENTRY_ID_KEYS = ("deviceId", "id", "imeiOrSerial", "mei", "imei", "serialNumber", "uploadId")


def _entry(entry: Any) -> tuple[str | None, str | None, int | None]:
    if isinstance(entry, Mapping):
        ident = first(entry, *_ENTRY_ID_KEYS)
        reason = first(entry, "data", "message", "reason", "errorMessage")
        code = first(entry, "code", "errorCode")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        msg = first(entry, "message")
        if msg and reason and msg != reason:
            reason = f"{msg}: {reason}"
        return (str(ident) if ident is not None else None), (str(reason) if reason else None), code
    if entry is None:
        return None, None, None
    return str(entry), None, None


def parse_batch_response(
    body: Any,
    sent_ids: Iterable[str],
    lists: tuple = _BATCH_LISTS,
    aliases: Mapping[str, str] | None = None,
) -> BatchResult:
    """Per-id outcomes of a device batch answered with 200.

    Lists (success / notFound / invalid / failed; entries are ids or objects with id, code and
    message) set each id's outcome. When the body has none of these lists (an all-or-nothing call
    that answered 200) every sent id succeeded; when it has some, a sent id not mentioned failed
    with the reason "not reported by Knox". `aliases` maps other names of a device (its KME id,
    IMEI or serial) to the id that was sent, so an answer naming the device differently from
    the request still lands on the sent id.
    """
    result = BatchResult(batches=1)
    sent_ids = list(sent_ids)
    sent_as = {**(aliases or {}), **{i: i for i in sent_ids}}
    inner = _unwrap(body)
    seen_any_list = False
    if isinstance(inner, Mapping):
        for outcome, names in lists:
            for name in names:
                entries = inner.get(name)
                if not isinstance(entries, list):
                    continue
                seen_any_list = True
                for entry in entries:
                    ident, reason, code = _entry(entry)
                    if ident is None:
                        continue
                    ident = sent_as.get(ident, ident)
                    if outcome == "succeeded":
                        result.set(ident, "succeeded")
                    else:
                        default = {
                            "not_found": "device not found in Knox",
                            "invalid": "invalid device id",
                            "failed": "failed in Knox",
                        }[outcome]
                        result.set(ident, outcome, reason or default, code)
    for ident in sent_ids:
        if ident not in result.outcomes:
            if seen_any_list:
                result.set(ident, "failed", "not reported by Knox")
            else:
                result.set(ident, "succeeded")
    return result


def parse_assign_response(
    body: Any, sent_ids: Iterable[str], aliases: Mapping[str, str] | None = None
) -> BatchResult:
    """`assignProfile` response [Unverified]: the v2-style lists, or an empty 200."""
    return parse_batch_response(body, sent_ids, aliases=aliases)


def parse_unassign_response(
    body: Any, sent_ids: Iterable[str], aliases: Mapping[str, str] | None = None
) -> BatchResult:
    """v2 `unassignProfile` response [keys Unverified]: success / notFound / invalid lists."""
    return parse_batch_response(body, sent_ids, aliases=aliases)


def parse_delete_response(
    body: Any, sent_ids: Iterable[str], aliases: Mapping[str, str] | None = None
) -> BatchResult:
    """`devices/delete` response [Code]: success / failed / notFound (+ invalid) lists."""
    return parse_batch_response(body, sent_ids, aliases=aliases)


_UPLOAD_LISTS = (
    ("succeeded", ("approvedUploadIds", "successUploadList", "approvedUploadList", "successList")),
    ("not_found", ("notFoundUploadList", "notFoundList")),
    ("invalid", ("invalidUploadList", "invalidList")),
    ("failed", ("failedUploadList", "failedList")),
)


def build_approve_uploads_body(upload_ids: Sequence[str]) -> dict[str, Any]:
    """`uploads/approvals` body [Unverified]: `{"uploadIds": [...]}`."""
    return {"uploadIds": list(upload_ids)}


def parse_approve_uploads_response(body: Any, sent_ids: Iterable[str]) -> BatchResult:
    """`uploads/approvals` response [Unverified]: per-upload lists, or an empty 200."""
    return parse_batch_response(body, sent_ids, _UPLOAD_LISTS)


def build_reseller_approval_body(
    reseller_id: str,
    *,
    approve: bool = True,
    auto_approve: bool | None = None,
    default_profile_id: str | None = None,
) -> dict[str, Any]:
    """`reseller/approvals` body [Unverified]."""
    body: dict[str, Any] = {"resellerId": reseller_id, "approve": approve}
    if auto_approve is not None:
        body["autoApprove"] = auto_approve
    if default_profile_id is not None:
        body["defaultProfileId"] = default_profile_id
    return body


def parse_reseller(body: Any) -> Reseller:
    """A reseller object, possibly wrapped in `{"reseller": ...}` [Unverified]."""
    inner = _unwrap(body)
    if isinstance(inner, Mapping) and isinstance(inner.get("reseller"), Mapping):
        inner = inner["reseller"]
    return Reseller.from_api(inner if isinstance(inner, Mapping) else {})


def build_profile_alias_body(
    reseller_id: str, profile_id: str, name: str | None = None
) -> dict[str, Any]:
    """Profile alias create/update body [Unverified]."""
    body: dict[str, Any] = {"resellerId": reseller_id, "profileId": profile_id}
    if name is not None:
        body["profileAliasName"] = name
    return body


def parse_profile_alias(body: Any) -> ProfileAlias:
    """A profile alias object [Unverified]."""
    inner = _unwrap(body)
    if isinstance(inner, Mapping) and isinstance(inner.get("profileAlias"), Mapping):
        inner = inner["profileAlias"]
    return ProfileAlias.from_api(inner if isinstance(inner, Mapping) else {})


def build_profile_body(profile: Profile) -> dict[str, Any]:
    """Profile create/update body [field names Unverified, see PROFILE_API_FIELDS].

    Unset (None) fields are left out; `profile.extra` is merged last.
    """
    body: dict[str, Any] = {}
    for attr, names in PROFILE_API_FIELDS.items():
        value = getattr(profile, attr)
        if value is not None:
            body[names[0]] = value
    body.update(profile.extra)
    return body


def parse_profile(body: Any) -> Profile:
    """One profile object, possibly wrapped in `{"profile": ...}`."""
    inner = _unwrap(body)
    if isinstance(inner, Mapping) and isinstance(inner.get("profile"), Mapping):
        inner = inner["profile"]
    return Profile.from_api(inner if isinstance(inner, Mapping) else {})


def parse_async_create_response(body: Any) -> str:
    """The transaction id of a `createAsync` answer [Unverified]. Raises ValueError if absent."""
    inner = _unwrap(body)
    if isinstance(inner, Mapping):
        tid = first(inner, "transactionId", "id")
        if tid is not None:
            return str(tid)
    raise ValueError("createAsync answered without a transactionId")


def parse_transactions(body: Any) -> tuple[list[Transaction], int]:
    """`profiles/status` [Doc]: `{"profiles": {"totalCount", ..., "transactions": [...]}}`."""
    inner = _unwrap(body)
    if isinstance(inner, Mapping) and isinstance(inner.get("profiles"), Mapping):
        inner = inner["profiles"]
    items = _list(inner, "transactions", "list")
    txs = [Transaction.from_api(t) for t in items if isinstance(t, Mapping)]
    return txs, _total(inner, len(txs))
