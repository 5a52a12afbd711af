"""Typed results of the Knox client, parsed tolerantly from Knox JSON.

Unknown fields are ignored; the field-name variants of kme-api.md are accepted; times may be epoch
milliseconds (number or digit string), epoch seconds, or ISO 8601 strings, and always come out as
timezone-aware UTC datetimes (or None).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kmeweb.identifiers import is_meid, is_valid_imei

Outcome = Literal["succeeded", "not_found", "invalid", "failed"]

_fromts = datetime.fromtimestamp
# Epoch values above this are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from epoch ms/s (number or digit string) or ISO 8601; else None."""
    if value.__class__ is int:  # the common case: epoch ms
        try:
            return _fromts(value / 1000.0 if value >= _MS_THRESHOLD else value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        num = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            num = float(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    else:
        return None
    if abs(num) >= _MS_THRESHOLD:
        num /= 1000.0
    try:
        return datetime.fromtimestamp(num, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def to_epoch_ms(when: datetime) -> int:
    """Epoch milliseconds of a datetime (naive values are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def first(data: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of `names` present (and not None) in `data`, else None."""
    for name in names:
        value = data.get(name)
        if value is not None:
            return value
    return None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _s(value: Any) -> str | None:
    """`_str` with a fast path for values that already are str or None."""
    if value is None or value.__class__ is str:
        return value
    return str(value)


def _bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "on")
    return bool(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _tags(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, Iterable):
        return [str(t) for t in value if t is not None and str(t) != ""]
    return [str(value)]


class Device:
    """One device record of KME (a `devices/list` item), read from its JSON object on access.

    Listing is the hot path (a full pull reads every device): wrapping the parsed object costs
    next to nothing and each attribute is parsed when it is read, so a caller that needs five
    fields does not pay for seventeen. Attributes are read-only; name variants of kme-api.md
    are accepted, times come out as aware UTC datetimes (or None).
    """

    __slots__ = ("_d",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._d = data

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Device:
        """Wrap one `deviceList` item (not copied: the caller hands it over)."""
        return cls(d)

    def _get(self, name: str, *variants: str) -> Any:
        value = self._d.get(name)
        if value is None and variants:
            value = first(self._d, *variants)
        return value

    @property
    def raw(self) -> Mapping[str, Any]:
        """The JSON object as KME sent it."""
        return self._d

    @property
    def id(self) -> str | None:
        return _s(self._get("id", "deviceUid"))

    @property
    def mei(self) -> str | None:
        """IMEI or MEID as KME sent it."""
        return _s(self._get("mei", "meidImei", "imei", "meid", "deviceId"))

    @property
    def serial(self) -> str | None:
        return _s(self._get("serialNumber", "serial", "serialNo"))

    @property
    def model(self) -> str | None:
        return _s(self._get("model", "modelName"))

    @property
    def profile_id(self) -> str | None:
        return _s(self._d.get("profileId"))

    @property
    def profile_name(self) -> str | None:
        return _s(self._d.get("profileName"))

    @property
    def user_name(self) -> str | None:
        return _s(self._get("userName", "userId"))

    @property
    def tags(self) -> list[str]:
        return _tags(self._d.get("tags"))

    @property
    def upload_id(self) -> str | None:
        return _s(self._d.get("uploadId"))

    @property
    def order_id(self) -> str | None:
        return _s(self._get("orderId", "orderNo", "orderNumber"))

    @property
    def reseller_id(self) -> str | None:
        return _s(self._d.get("resellerId"))

    @property
    def reseller_name(self) -> str | None:
        return _s(self._d.get("resellerName"))

    @property
    def reseller_upload_time(self) -> datetime | None:
        return parse_time(self._get("resellerUploadTime", "uploadTime"))

    @property
    def status(self) -> str | None:
        return _s(self._get("status", "deviceStatus"))

    @property
    def mac(self) -> str | None:
        return _s(self._get("mac", "wifiMac", "macAddress"))

    @property
    def create_time(self) -> datetime | None:
        return parse_time(self._get("createTime", "createdTime", "createdAt"))

    @property
    def update_time(self) -> datetime | None:
        return parse_time(self._get("updateTime", "updatedTime", "updatedAt"))

    @property
    def imei(self) -> str | None:
        """The IMEI when `mei` holds a valid one."""
        mei = self.mei
        return mei if mei and is_valid_imei(mei) else None

    @property
    def meid(self) -> str | None:
        """The MEID when `mei` holds one."""
        mei = self.mei
        return mei.upper() if mei and is_meid(mei) else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and dict(self._d) == dict(other._d)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Device(id={self.id!r}, mei={self.mei!r}, serial={self.serial!r})"


@dataclass(slots=True)
class DevicePage:
    """One page of `devices/list`: its devices and the totals Knox reported with it."""

    devices: list[Device]
    total_count: int
    page_num: int
    processing_count: int = 0


@dataclass(slots=True)
class Upload:
    """A reseller upload as the customer sees it (Devices > Uploads)."""

    upload_id: str
    reseller_id: str | None = None
    reseller_name: str | None = None
    order_no: str | None = None
    upload_time: datetime | None = None
    status: str | None = None
    device_count: int | None = None
    pending_count: int | None = None
    device_ids: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        """True while the upload still awaits approval."""
        return (self.status or "").lower() == "pending"

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Upload:
        """Parse one upload item."""
        ids = first(d, "deviceIds", "devices") or []
        ids = [str(x if not isinstance(x, Mapping) else first(x, "id", "mei")) for x in ids]
        return cls(
            upload_id=str(first(d, "uploadId", "id")),
            reseller_id=_str(first(d, "resellerId")),
            reseller_name=_str(first(d, "resellerName")),
            order_no=_str(first(d, "orderNo", "orderId", "orderNumber")),
            upload_time=parse_time(first(d, "uploadTime", "resellerUploadTime", "createTime")),
            status=_str(first(d, "status", "uploadStatus")),
            device_count=_int(first(d, "deviceCount", "totalCount")),
            pending_count=_int(first(d, "pendingCount")),
            device_ids=ids,
        )


@dataclass(slots=True)
class Reseller:
    """A reseller linked to the customer, with the customer's preferences for it."""

    reseller_id: str
    name: str | None = None
    status: str | None = None
    auto_approve: bool | None = None
    default_profile_id: str | None = None

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Reseller:
        """Parse one reseller item."""
        return cls(
            reseller_id=str(first(d, "resellerId", "id")),
            name=_str(first(d, "resellerName", "name")),
            status=_str(first(d, "status")),
            auto_approve=_bool(first(d, "autoApprove", "autoApproval")),
            default_profile_id=_str(first(d, "defaultProfileId", "profileId")),
        )


@dataclass(slots=True)
class ProfileAlias:
    """A profile alias shared with a reseller so it can assign a KME profile at upload time."""

    alias_id: str
    reseller_id: str | None = None
    profile_id: str | None = None
    name: str | None = None

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> ProfileAlias:
        """Parse one profile alias item."""
        return cls(
            alias_id=str(first(d, "profileAliasId", "id", "aliasId")),
            reseller_id=_str(first(d, "resellerId")),
            profile_id=_str(first(d, "profileId")),
            name=_str(first(d, "profileAliasName", "aliasName", "name")),
        )


#: Profile attribute -> Knox JSON names, the first being what the client sends. [Unverified]:
#: Samsung's spec for profile bodies was not available; correct the names here only.
PROFILE_API_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "profileName"),
    "description": ("description", "profileDescription"),
    "company_name": ("companyName",),
    "supported_mdm": ("supportedMDM", "mdmName"),
    "mdm_apk_url": ("mdmApkUrl", "mdmAgentApkUrl", "apkUrl"),
    "mdm_admin_component": ("mdmAdminComponent", "adminComponentName"),
    "mdm_signature_checksum": ("mdmSignatureChecksum", "signatureChecksum"),
    "mdm_server_uri": ("mdmServerUri", "kmeUri", "emmServerUri"),
    "custom_json": ("customJson", "customData", "mdmProfileCustomData"),
    "skip_setup_wizard": ("skipSetupWizard",),
    "allow_user_cancel": ("allowUserCancel",),
    "do_enabled": ("doEnabled",),
    "ae_enabled": ("aeEnabled",),
    "support_phone_number": ("supportPhoneNumber",),
    "support_email_address": ("supportEmailAddress",),
}
_PROFILE_BOOLS = {"skip_setup_wizard", "allow_user_cancel", "do_enabled", "ae_enabled"}


@dataclass(slots=True)
class Profile:
    """A KME profile. `id` is None for a profile not yet created in Knox."""

    name: str
    id: str | None = None
    description: str | None = None
    company_name: str | None = None
    supported_mdm: str | None = None
    mdm_apk_url: str | None = None
    mdm_admin_component: str | None = None
    mdm_signature_checksum: str | None = None
    mdm_server_uri: str | None = None
    custom_json: str | None = None
    skip_setup_wizard: bool | None = None
    allow_user_cancel: bool | None = None
    do_enabled: bool | None = None
    ae_enabled: bool | None = None
    support_phone_number: str | None = None
    support_email_address: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    aliases: list[ProfileAlias] = field(default_factory=list)
    #: Extra Knox JSON fields sent as-is on create/update (for fields this class lacks).
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Profile:
        """Parse one profile object."""
        values: dict[str, Any] = {}
        for attr, names in PROFILE_API_FIELDS.items():
            value = first(d, *names)
            if attr in _PROFILE_BOOLS:
                values[attr] = _bool(value)
            elif attr == "custom_json" and isinstance(value, dict | list):
                values[attr] = json.dumps(value)
            else:
                values[attr] = _str(value)
        aliases = first(d, "profileAlias", "profileAliases") or []
        if isinstance(aliases, Mapping):
            aliases = [aliases]
        return cls(
            id=_str(first(d, "id", "profileId")),
            create_time=parse_time(first(d, "createTime", "createdTime")),
            update_time=parse_time(first(d, "updateTime", "updatedTime", "lastModified")),
            aliases=[ProfileAlias.from_api(a) for a in aliases if isinstance(a, Mapping)],
            **{**values, "name": values.get("name") or ""},
        )


@dataclass(slots=True)
class Transaction:
    """An asynchronous profile operation, as `profiles/status` reports it."""

    transaction_id: str
    state: str | None = None
    type: str | None = None
    tenant_id: str | None = None
    profile_id: str | None = None
    profile_name: str | None = None
    message: str | None = None

    @property
    def done(self) -> bool:
        """True once the transaction reached a final state."""
        return (self.state or "").lower() in ("complete", "completed", "failed", "error")

    @property
    def succeeded(self) -> bool:
        """True when the transaction completed successfully."""
        return (self.state or "").lower() in ("complete", "completed")

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Transaction:
        """Parse one transaction item."""
        return cls(
            transaction_id=str(first(d, "transactionId", "id")),
            state=_str(first(d, "state", "status")),
            type=_str(first(d, "type")),
            tenant_id=_str(first(d, "tenantId")),
            profile_id=_str(first(d, "profileId")),
            profile_name=_str(first(d, "profileName")),
            message=_str(first(d, "message", "errorMessage", "data")),
        )


@dataclass(slots=True)
class DeviceOutcome:
    """What happened to one id of a batch: the outcome and, unless it succeeded, why."""

    outcome: Outcome
    reason: str | None = None
    code: int | None = None


@dataclass
class BatchResult:
    """Per-id outcomes of a batched device (or upload) operation, merged over all batches."""

    outcomes: dict[str, DeviceOutcome] = field(default_factory=dict)
    batches: int = 0

    def set(
        self, device_id: str, outcome: Outcome, reason: str | None = None, code: int | None = None
    ) -> None:
        """Record the outcome of one id (a later record for the same id replaces the earlier)."""
        self.outcomes[device_id] = DeviceOutcome(outcome, reason, code)

    def merge(self, other: BatchResult) -> None:
        """Add another result's outcomes and batch count to this one."""
        self.outcomes.update(other.outcomes)
        self.batches += other.batches

    def ids(self, outcome: Outcome) -> list[str]:
        """The ids with the given outcome, in the order they were recorded."""
        return [i for i, o in self.outcomes.items() if o.outcome == outcome]

    @property
    def succeeded(self) -> list[str]:
        return self.ids("succeeded")

    @property
    def not_found(self) -> list[str]:
        return self.ids("not_found")

    @property
    def invalid(self) -> list[str]:
        return self.ids("invalid")

    @property
    def failed(self) -> list[str]:
        return self.ids("failed")

    @property
    def ok(self) -> bool:
        """True when every id succeeded."""
        return all(o.outcome == "succeeded" for o in self.outcomes.values())

    def counts(self) -> dict[str, int]:
        """Number of ids per outcome."""
        out = {"succeeded": 0, "not_found": 0, "invalid": 0, "failed": 0}
        for o in self.outcomes.values():
            out[o.outcome] += 1
        return out

    def reason(self, device_id: str) -> str | None:
        """Why an id did not succeed (None if it did or is unknown)."""
        o = self.outcomes.get(device_id)
        return o.reason if o else None


#: Back-compat friendly name used by the sync engine for device operations.
DeviceBatchResult = BatchResult


@dataclass(slots=True)
class DeviceAssignment:
    """One device to assign, with optional per-device credentials in plain text.

    The client encrypts `user_name` and `password` (sent as `userToken`) with the Samsung public
    key before sending; they are never logged.
    """

    device_id: str
    user_name: str | None = None
    password: str | None = field(default=None, repr=False)
