"""In-memory state of the KME simulator, with optional SQLite persistence.

Hot state lives in dicts indexed by KME id, IMEI/MEID and serial number. With a state file, every
mutating request ends with `flush()`: the records it touched are written with `executemany` in one
transaction (write-through, no per-row commits). Everything here runs under `SimState.lock`;
methods raise `SimError` for answers that are Knox errors.
"""

from __future__ import annotations

import json
import random
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from kmeweb.knox.simulator import errors as codes
from kmeweb.knox.simulator import keys
from kmeweb.knox.simulator.errors import SimError, bad_param, error_body
from kmeweb.knox.simulator.ids import kind_of, luhn_digit

__all__ = ["SimError", "SimState", "bad_param", "error_body"]

# Device status strings [Unverified names; the console shows pending enrollment, profile
# assigned, enrollment completed]. "Pending Approval" marks devices of an upload not yet approved.
STATUS_PENDING_APPROVAL = "Pending Approval"
STATUS_PENDING_ENROLLMENT = "Pending Enrollment"
STATUS_PROFILE_ASSIGNED = "Profile Assigned"
STATUS_ENROLLED = "Enrollment Completed"

PROFILE_FORBIDDEN_CHARS = set("\\#/$*%^&()+?{}[]")
PROFILE_DESCRIPTION_MAX = 200
SAMSUNG_MODELS = (
    "SM-G991B",
    "SM-S911B",
    "SM-A525F",
    "SM-A536B",
    "SM-G781B",
    "SM-T505",
    "SM-X200",
    "SM-G736B",
)
# kme-api.md 2.2, the documented boolean profile fields.
_PROFILE_BOOL_KEYS = {"skipSetupWizard", "allowUserCancel", "doEnabled", "aeEnabled"}


def new_id(n: int = 24) -> str:
    return secrets.token_hex(n // 2)


@dataclass(slots=True)
class SimDevice:
    id: str
    mei: str | None
    serial: str | None
    model: str | None
    upload_id: str | None = None
    order_id: str | None = None
    reseller_id: str | None = None
    reseller_name: str | None = None
    reseller_upload_time: int | None = None
    approved: bool = False
    profile_id: str | None = None
    user_name: str | None = None
    user_token: str | None = None
    tags: list[str] = field(default_factory=list)
    enrolled: bool = False
    mac: str | None = None
    create_time: int = 0
    update_time: int = 0

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class SimUpload:
    upload_id: str
    reseller_id: str
    reseller_name: str
    order_no: str | None
    upload_time: int
    status: str = "Pending"
    device_ids: dict[str, None] = field(default_factory=dict)  # ordered set

    def record(self) -> dict[str, Any]:
        rec = {name: getattr(self, name) for name in self.__slots__}
        rec["device_ids"] = list(self.device_ids)
        return rec


@dataclass(slots=True)
class SimReseller:
    reseller_id: str
    name: str
    status: str = "Approved"
    auto_approve: bool = False
    default_profile_id: str | None = None

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def api(self) -> dict[str, Any]:
        return {
            "resellerId": self.reseller_id,
            "resellerName": self.name,
            "status": self.status,
            "autoApprove": self.auto_approve,
            "defaultProfileId": self.default_profile_id,
        }


@dataclass
class Tenant:
    """One KME customer: credentials and all its data."""

    customer_id: str
    name: str
    oauth_clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    # public key (base64 DER) -> {"client_identifier", "private" (kept for /_sim/credentials)}
    legacy_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    devices: dict[str, SimDevice] = field(default_factory=dict)
    by_mei: dict[str, str] = field(default_factory=dict)
    by_serial: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, SimUpload] = field(default_factory=dict)
    resellers: dict[str, SimReseller] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile_names: dict[str, str] = field(default_factory=dict)  # casefolded name -> id
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_tx: set[str] = field(default_factory=set)  # transactions still InProgress
    _order: list[str] | None = None
    _changed: dict[int, list[str]] = field(default_factory=dict)
    # Serialized `device_api` per device id, so listing is a string join (dropped on change).
    _json: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "oauth_clients": self.oauth_clients,
            "legacy_keys": self.legacy_keys,
        }

    # indexes
    def index_device(self, d: SimDevice) -> None:
        self.devices[d.id] = d
        if d.mei:
            self.by_mei[d.mei.upper()] = d.id
        if d.serial:
            self.by_serial[d.serial.upper()] = d.id
        self._order = None
        self._changed.clear()

    def unindex_device(self, d: SimDevice) -> None:
        self.devices.pop(d.id, None)
        if d.mei:
            self.by_mei.pop(d.mei.upper(), None)
        if d.serial:
            self.by_serial.pop(d.serial.upper(), None)
        self._order = None
        self._changed.clear()
        self._json.pop(d.id, None)

    def device_changed(self, device_id: str | None = None) -> None:
        """Drop caches after a device changed (`device_id` None: any/all devices)."""
        self._changed.clear()
        if device_id is None:
            self._json.clear()
        else:
            self._json.pop(device_id, None)

    def device_json(self, device_id: str) -> str:
        text = self._json.get(device_id)
        if text is None:
            text = json.dumps(self.device_api(self.devices[device_id]), separators=(",", ":"))
            self._json[device_id] = text
        return text

    def lookup(self, ident: str) -> SimDevice | None:
        """A device by KME id, IMEI/MEID or serial number."""
        ident = str(ident).strip()
        dev_id = ident if ident in self.devices else None
        if dev_id is None:
            key = ident.upper()
            dev_id = self.by_mei.get(key) or self.by_serial.get(key)
        return self.devices.get(dev_id) if dev_id else None

    def ordered_ids(self) -> list[str]:
        if self._order is None:
            self._order = list(self.devices)
        return self._order

    def changed_ids(self, after_ms: int) -> list[str]:
        ids = self._changed.get(after_ms)
        if ids is None:
            ids = [i for i, d in self.devices.items() if d.update_time > after_ms]
            if len(self._changed) > 32:
                self._changed.clear()
            self._changed[after_ms] = ids
        return ids

    def device_status(self, d: SimDevice) -> str:
        if not d.approved:
            return STATUS_PENDING_APPROVAL
        if d.enrolled:
            return STATUS_ENROLLED
        if d.profile_id:
            return STATUS_PROFILE_ASSIGNED
        return STATUS_PENDING_ENROLLMENT

    def device_api(self, d: SimDevice) -> dict[str, Any]:
        profile = self.profiles.get(d.profile_id) if d.profile_id else None
        return {
            "id": d.id,
            "mei": d.mei,
            "serialNumber": d.serial,
            "model": d.model,
            "profileId": d.profile_id,
            "profileName": profile["name"] if profile else None,
            "userName": d.user_name,
            "tags": d.tags,
            "uploadId": d.upload_id,
            "orderId": d.order_id,
            "resellerId": d.reseller_id,
            "resellerName": d.reseller_name,
            "resellerUploadTime": d.reseller_upload_time,
            "status": self.device_status(d),
            "mac": d.mac,
            "tenantName": self.name,
            "createTime": d.create_time,
            "updateTime": d.update_time,
        }

    def upload_api(self, u: SimUpload) -> dict[str, Any]:
        pending = sum(1 for i in u.device_ids if i in self.devices and not self.devices[i].approved)
        return {
            "uploadId": u.upload_id,
            "resellerId": u.reseller_id,
            "resellerName": u.reseller_name,
            "orderNo": u.order_no,
            "uploadTime": u.upload_time,
            "status": u.status,
            "deviceCount": sum(1 for i in u.device_ids if i in self.devices),
            "pendingCount": pending,
        }


@dataclass
class FaultRule:
    """A fault injected on API paths matching `path` (fnmatch pattern, or "re:<regex>").

    Effects: `latency_ms` added delay; `hang_s` a sleep (longer than the client timeout makes
    a timeout; the request is still processed afterwards, like a slow server); `status` an error
    answer (with `code`, `message`, `retry_after`) given with probability `rate`. `remaining`
    limits how many matching calls the rule still applies to (None: forever). `hold` keeps a
    matching request waiting (at most `hold_max_s`) until the rule is released through
    `POST /_sim/faults/<id>/release`: a test decides exactly when a slow call lands.
    """

    id: str
    path: str = "*"
    methods: list[str] | None = None
    status: int | None = None
    rate: float = 1.0
    code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    hang_s: float = 0.0
    remaining: int | None = None
    hits: int = 0
    hold: bool = False
    hold_max_s: float = 60.0
    held: int = 0
    released: threading.Event = field(default_factory=threading.Event, repr=False)

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "methods": self.methods,
            "status": self.status,
            "rate": self.rate,
            "code": self.code,
            "message": self.message,
            "retryAfter": self.retry_after,
            "latencyMs": self.latency_ms,
            "hangS": self.hang_s,
            "remaining": self.remaining,
            "hits": self.hits,
            "hold": self.hold,
            "held": self.held,
        }


@dataclass
class SimSettings:
    max_devices_per_request: int = 1000
    max_page_size: int = 1000
    oauth_token_lifetime_s: float = 599.0
    legacy_token_lifetime_s: float = 1800.0
    async_profile_delay_s: float = 0.3
    legacy_require_unique_request_jti: bool = False
    require_json_content_type: bool = False
    #: Name devices in success lists by KME id even when the request used an IMEI or serial.
    answer_with_kme_ids: bool = False


class SimState:
    """All simulator state. Callers hold `lock` around every method call."""

    def __init__(
        self,
        state_path: str | None = None,
        *,
        settings: SimSettings | None = None,
        encryption_key: rsa.RSAPrivateKey | None = None,
        rng_seed: int | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.settings = settings or SimSettings()
        self.rng = random.Random(rng_seed)
        self.tenants: dict[str, Tenant] = {}
        self.oauth_tokens: dict[str, tuple[str, float, str]] = {}  # token -> (cid, exp, scope)
        # access token -> (cid, public key b64, exp)
        self.legacy_tokens: dict[str, tuple[str, str, float]] = {}
        self.used_jtis: set[str] = set()
        self.request_jtis: set[str] = set()
        self.verified_jwts: dict[str, tuple[str, float]] = {}
        self.faults: list[FaultRule] = []
        # Hold rules by id, kept after they stop matching so a test can still release them.
        self.holds: dict[str, FaultRule] = {}
        self.endpoint_counters: dict[str, dict[str, int]] = {}
        self.device_counters: dict[str, dict[str, Any]] = {}
        self.demo: dict[str, Any] | None = None
        self._last_ms = 0
        self._dirty: dict[tuple[str, str, str], Any] = {}
        self._deleted: set[tuple[str, str, str]] = set()
        self._db: sqlite3.Connection | None = None
        self.encryption_key = encryption_key
        if state_path:
            self._open(state_path)
        if self.encryption_key is None:
            self.encryption_key = keys.new_key()
            self._save_meta("encryption_key", keys.private_b64(self.encryption_key))

    def now_ms(self) -> int:
        """Epoch ms, never going backwards (ties allowed: changedAfter is strict ">")."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms)
        return self._last_ms

    def _open(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, tenant TEXT NOT NULL, "
            "id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, tenant, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._load()

    def _save_meta(self, key: str, value: Any) -> None:
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def _load(self) -> None:
        assert self._db is not None
        meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        if self.encryption_key is None and meta.get("encryption_key"):
            self.encryption_key = keys.read_private(meta["encryption_key"])
        self.demo = meta.get("demo")
        rows = self._db.execute("SELECT kind, tenant, data FROM records ORDER BY rowid").fetchall()
        for kind, _tenant, data in rows:
            if kind == "tenant":
                rec = json.loads(data)
                self.tenants[rec["customer_id"]] = Tenant(**rec)
        for kind, tenant_id, data in rows:
            t = self.tenants.get(tenant_id)
            if t is None or kind == "tenant":
                continue
            rec = json.loads(data)
            if kind == "device":
                t.index_device(SimDevice(**rec))
            elif kind == "upload":
                rec["device_ids"] = dict.fromkeys(rec["device_ids"])
                t.uploads[rec["upload_id"]] = SimUpload(**rec)
            elif kind == "reseller":
                t.resellers[rec["reseller_id"]] = SimReseller(**rec)
            elif kind == "profile":
                t.profiles[rec["id"]] = rec
                t.profile_names[rec["name"].casefold()] = rec["id"]
            elif kind == "alias":
                t.aliases[rec["profileAliasId"]] = rec
            elif kind == "tx":
                t.transactions[rec["transactionId"]] = rec
                if rec["state"] == "InProgress":
                    t.pending_tx.add(rec["transactionId"])
        for t in self.tenants.values():
            ms = max((d.update_time for d in t.devices.values()), default=0)
            self._last_ms = max(self._last_ms, ms)

    def touch(self, kind: str, tenant: str, ident: str, obj: Any) -> None:
        """Mark a record for writing at the next flush."""
        if self._db is None:
            return
        key = (kind, tenant, ident)
        self._deleted.discard(key)
        self._dirty[key] = obj

    def forget(self, kind: str, tenant: str, ident: str) -> None:
        """Mark a record for deletion at the next flush."""
        if self._db is None:
            return
        key = (kind, tenant, ident)
        self._dirty.pop(key, None)
        self._deleted.add(key)

    def flush(self) -> None:
        """Write touched records and deletions in one transaction."""
        if self._db is None or not (self._dirty or self._deleted):
            return
        rows = []
        for (kind, tenant, ident), obj in self._dirty.items():
            rec = obj.record() if hasattr(obj, "record") else obj
            rows.append((kind, tenant, ident, json.dumps(rec, separators=(",", ":"))))
        db = self._db
        db.execute("BEGIN")
        try:
            if self._deleted:
                db.executemany(
                    "DELETE FROM records WHERE kind = ? AND tenant = ? AND id = ?", self._deleted
                )
            if rows:
                db.executemany(
                    # An upsert keeps the rowid, so the load order stays the creation order.
                    "INSERT INTO records (kind, tenant, id, data) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (kind, tenant, id) DO UPDATE SET data = excluded.data",
                    rows,
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            self._dirty.clear()
            self._deleted.clear()

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None

    def release_holds(self) -> None:
        """Let every held request go on and forget the hold rules."""
        for rule in self.holds.values():
            rule.released.set()
        self.holds.clear()

    def reset(self) -> None:
        """Forget all tenants, tokens, faults and counters (keeps the encryption key)."""
        self.tenants.clear()
        self.oauth_tokens.clear()
        self.legacy_tokens.clear()
        self.used_jtis.clear()
        self.request_jtis.clear()
        self.verified_jwts.clear()
        self.faults.clear()
        self.release_holds()
        self.endpoint_counters.clear()
        self.device_counters.clear()
        self.demo = None
        self._dirty.clear()
        self._deleted.clear()
        if self._db is not None:
            self._db.execute("DELETE FROM records")
            self._db.execute("DELETE FROM meta WHERE key != 'encryption_key'")

    def add_tenant(
        self,
        customer_id: str | None = None,
        name: str | None = None,
        *,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        legacy_key: rsa.RSAPrivateKey | None = None,
        legacy_public_key: str | None = None,
        client_identifier: str | None = None,
        legacy: bool = True,
    ) -> dict[str, Any]:
        """Register a tenant (or add credentials to an existing one); returns its credentials.

        OAuth credentials are made up when not given. With `legacy`, a key pair is generated
        unless a private key or a bare public key (base64 DER) is supplied.
        """
        cid = customer_id or ("C" + "".join(self.rng.choices(string.digits, k=11)))
        t = self.tenants.get(cid)
        if t is None:
            t = Tenant(customer_id=cid, name=name or f"Tenant {cid}")
            self.tenants[cid] = t
        client_id = oauth_client_id or f"kme-{secrets.token_hex(6)}"
        client_secret = oauth_client_secret or secrets.token_urlsafe(24)
        t.oauth_clients[client_id] = client_secret
        creds: dict[str, Any] = {
            "customer_id": cid,
            "tenant_name": t.name,
            "oauth_client_id": client_id,
            "oauth_client_secret": client_secret,
        }
        if legacy:
            private_b64 = None
            if legacy_public_key:
                pub = legacy_public_key
            else:
                key = legacy_key or keys.new_key()
                pub = keys.public_b64(key)
                private_b64 = keys.private_b64(key)
            ident = client_identifier or secrets.token_hex(16)
            t.legacy_keys[pub] = {"client_identifier": ident, "private": private_b64}
            creds["legacy_client_identifier"] = ident
            # keys.json as the portal hands it out: the key pair and the client identifier.
            creds["legacy_keys_json"] = {"Public": pub, "Private": private_b64, "Identifier": ident}
        self.touch("tenant", cid, cid, t)
        return creds

    def tenant_credentials(self, t: Tenant) -> dict[str, Any]:
        out: dict[str, Any] = {
            "customer_id": t.customer_id,
            "tenant_name": t.name,
            "oauth_clients": [
                {"client_id": k, "client_secret": v} for k, v in t.oauth_clients.items()
            ],
            "legacy": [
                {
                    "client_identifier": v["client_identifier"],
                    "keys_json": {
                        "Public": pub,
                        "Private": v.get("private"),
                        "Identifier": v["client_identifier"],
                    },
                }
                for pub, v in t.legacy_keys.items()
            ],
        }
        return out

    def encryption_public_key_b64(self) -> str:
        assert self.encryption_key is not None
        return keys.public_b64(self.encryption_key)

    def count_endpoint(self, key: str, status: int) -> None:
        c = self.endpoint_counters.setdefault(key, {"calls": 0})
        c["calls"] += 1
        c[str(status)] = c.get(str(status), 0) + 1

    def count_device(self, device_id: str, op: str, profile_id: str | None = None) -> None:
        c = self.device_counters.setdefault(device_id, {})
        c[op] = c.get(op, 0) + 1
        if op == "assign":
            c.setdefault("profiles", []).append(profile_id)

    def _new_imei(self, t: Tenant, taken: set[str]) -> str:
        """An IMEI neither the tenant nor `taken` (this upload's so far) has; added to `taken`."""
        while True:
            body = "35" + "".join(self.rng.choices(string.digits, k=12))
            imei = body + str(luhn_digit(body))
            if imei not in t.by_mei and imei not in taken:
                taken.add(imei)
                return imei

    def _new_serial(self, t: Tenant, taken: set[str]) -> str:
        """A serial number neither the tenant nor `taken` has; added to `taken`."""
        alnum = string.ascii_uppercase + string.digits
        while True:
            serial = (
                "R"
                + self.rng.choice(("58", "59", "5C", "F8", "FC"))
                + self.rng.choice("NPRT")
                + self.rng.choice("123456789ABC")
                + "".join(self.rng.choices(alnum, k=6))
            )
            if serial not in t.by_serial and serial not in taken:
                taken.add(serial)
                return serial

    def add_reseller(
        self,
        t: Tenant,
        name: str,
        *,
        reseller_id: str | None = None,
        auto_approve: bool = False,
        default_profile_id: str | None = None,
        status: str = "Approved",
    ) -> SimReseller:
        rid = reseller_id or ("R" + "".join(self.rng.choices(string.digits, k=9)))
        r = t.resellers.get(rid)
        if r is None:
            r = SimReseller(rid, name, status, auto_approve, default_profile_id)
            t.resellers[rid] = r
        else:
            r.name, r.auto_approve, r.default_profile_id = name, auto_approve, default_profile_id
        self.touch("reseller", t.customer_id, rid, r)
        return r

    def add_upload(
        self,
        t: Tenant,
        reseller: SimReseller,
        count: int = 0,
        *,
        devices: Iterable[dict[str, Any]] = (),
        order_no: str | None = None,
        profile_id: str | None = None,
    ) -> tuple[SimUpload, list[SimDevice]]:
        """A reseller upload of `count` generated devices plus explicit `devices`.

        Devices already known (same IMEI/serial) are skipped. Auto-approving resellers get the
        upload approved at once (and their default profile assigned).
        """
        now = self.now_ms()
        upload = SimUpload(
            upload_id=new_id(16),
            reseller_id=reseller.reseller_id,
            reseller_name=reseller.name,
            order_no=order_no or f"PO-{self.rng.randint(100000, 999999)}",
            upload_time=now,
        )
        specs = list(devices)
        # Generated devices are unique among themselves too: an IMEI or serial drawn twice
        # in one upload made the second device "already known" and skipped, so an upload of
        # 100,000 came out a device short about once in a hundred.
        meis: set[str] = set()
        serials: set[str] = set()
        for _ in range(count):
            specs.append(
                {
                    "mei": self._new_imei(t, meis),
                    "serialNumber": self._new_serial(t, serials),
                    "model": self.rng.choice(SAMSUNG_MODELS),
                }
            )
        created: list[SimDevice] = []
        for spec in specs:
            mei = spec.get("mei") or spec.get("imei")
            serial = spec.get("serialNumber") or spec.get("serial")
            if (mei and mei.upper() in t.by_mei) or (serial and serial.upper() in t.by_serial):
                continue
            d = SimDevice(
                id=new_id(),
                mei=mei,
                serial=serial.upper() if serial else None,
                model=spec.get("model"),
                upload_id=upload.upload_id,
                order_id=upload.order_no,
                reseller_id=reseller.reseller_id,
                reseller_name=reseller.name,
                reseller_upload_time=now,
                profile_id=profile_id,
                create_time=now,
                update_time=now,
            )
            t.index_device(d)
            upload.device_ids[d.id] = None
            created.append(d)
            self.touch("device", t.customer_id, d.id, d)
        t.uploads[upload.upload_id] = upload
        self.touch("upload", t.customer_id, upload.upload_id, upload)
        if reseller.auto_approve:
            self.approve_upload(t, upload)
        return upload, created

    def approve_upload(self, t: Tenant, upload: SimUpload) -> None:
        """Approve an upload's devices; apply the reseller's default profile to unassigned ones."""
        reseller = t.resellers.get(upload.reseller_id)
        default = reseller.default_profile_id if reseller else None
        if default and default not in t.profiles:
            default = None
        now = self.now_ms()
        for dev_id in upload.device_ids:
            d = t.devices.get(dev_id)
            if d is None or d.approved:
                continue
            d.approved = True
            if default and not d.profile_id:
                d.profile_id = default
            d.update_time = now
            self.count_device(d.id, "approve")
            t.device_changed(d.id)
            self.touch("device", t.customer_id, d.id, d)
        upload.status = "Approved"
        self.touch("upload", t.customer_id, upload.upload_id, upload)

    def delete_device(self, t: Tenant, d: SimDevice) -> None:
        t.unindex_device(d)
        u = t.uploads.get(d.upload_id or "")
        if u is not None:
            u.device_ids.pop(d.id, None)
            self.touch("upload", t.customer_id, u.upload_id, u)
        self.forget("device", t.customer_id, d.id)

    def bump(self, t: Tenant, d: SimDevice) -> None:
        """Record that a device changed: new updateTime, caches dropped, row to persist."""
        d.update_time = self.now_ms()
        t.device_changed(d.id)
        self.touch("device", t.customer_id, d.id, d)

    def decrypt(self, value: str) -> str:
        assert self.encryption_key is not None
        return keys.decrypt(value, self.encryption_key)

    def classify_missing(self, ident: str) -> str:
        """ "invalid" or "not_found" for an id that matched no device."""
        return "invalid" if kind_of(str(ident)) == "invalid" else "not_found"

    def check_batch(self, ids: list[Any]) -> None:
        if not ids:
            raise bad_param("Device ID list cannot be empty")
        cap = self.settings.max_devices_per_request
        if len(ids) > cap:
            raise SimError(
                400,
                codes.TOO_MANY_DEVICES,
                "TOO_MANY_DEVICES",
                f"At most {cap} devices per request",
            )

    def validate_profile(self, t: Tenant, body: dict[str, Any], exclude_id: str | None) -> dict:
        """The stored form of a profile body; raises SimError for the KME validation rules."""

        def invalid(msg: str) -> SimError:
            return SimError(
                400, codes.BULK_ENROLL_PROFILE_INVALID, "BULK_ENROLL_PROFILE_INVALID", msg
            )

        if not isinstance(body, dict):
            raise invalid("profile body must be a JSON object")
        prof = {k: v for k, v in body.items() if k not in ("customerId", "id", "profileId")}
        if "profileName" in prof and "name" not in prof:
            prof["name"] = prof.pop("profileName")
        name = prof.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name is required")
        name = name.strip()
        prof["name"] = name
        bad = sorted(PROFILE_FORBIDDEN_CHARS.intersection(name))
        if bad:
            raise invalid(f"name contains forbidden characters: {''.join(bad)}")
        if len(name) > 100:
            raise invalid("name is longer than 100 characters")
        desc = prof.get("description")
        if desc is not None and (not isinstance(desc, str) or len(desc) > PROFILE_DESCRIPTION_MAX):
            raise invalid(
                f"description must be text of at most {PROFILE_DESCRIPTION_MAX} characters"
            )
        for key in _PROFILE_BOOL_KEYS:
            if key in prof and prof[key] is not None and not isinstance(prof[key], bool):
                raise invalid(f"{key} must be true or false")
        do, ae = bool(prof.get("doEnabled")), bool(prof.get("aeEnabled"))
        if not do:
            for key in ("supportPhoneNumber", "supportEmailAddress"):
                if not prof.get(key):
                    raise invalid(f"{key} is required when doEnabled is false")
        if do or ae:
            if prof.get("skipSetupWizard") is not True:
                raise invalid("skipSetupWizard must be true when doEnabled or aeEnabled is true")
            if not prof.get("supportedMDM"):
                raise invalid("supportedMDM is required when doEnabled or aeEnabled is true")
            if prof.get("allowUserCancel") is True:
                raise invalid("allowUserCancel must be false when doEnabled or aeEnabled is true")
        other = t.profile_names.get(name.casefold())
        if other is not None and other != exclude_id:
            raise SimError(
                409,
                codes.BULK_ENROLL_PROFILE_NAME_CONFLICT,
                "BULK_ENROLL_PROFILE_NAME_CONFLICT",
                f"A profile named {name!r} already exists",
            )
        return prof

    def put_profile(self, t: Tenant, prof: dict[str, Any], profile_id: str | None = None) -> dict:
        now = self.now_ms()
        if profile_id is None:
            profile_id = new_id()
            prof = {"id": profile_id, **prof, "createTime": now, "updateTime": now}
        else:
            old = t.profiles[profile_id]
            t.profile_names.pop(old["name"].casefold(), None)
            prof = {
                "id": profile_id,
                **prof,
                "createTime": old.get("createTime"),
                "updateTime": now,
            }
        t.profiles[profile_id] = prof
        t.profile_names[prof["name"].casefold()] = profile_id
        t._json.clear()  # devices show the profile's name
        self.touch("profile", t.customer_id, profile_id, prof)
        return prof

    def process_due_transactions(self, t: Tenant) -> None:
        """Finish createAsync transactions whose delay has passed."""
        if not t.pending_tx:
            return
        now = time.time()
        for tx_id in sorted(t.pending_tx, key=lambda i: t.transactions[i]["_due"]):
            tx = t.transactions[tx_id]
            if tx["_due"] > now:
                continue
            t.pending_tx.discard(tx_id)
            try:
                prof = self.validate_profile(t, tx["_body"], None)
            except SimError as exc:
                tx["state"] = "Failed"
                tx["message"] = str(exc.data)
            else:
                created = self.put_profile(t, prof)
                tx["state"] = "Complete"
                tx["profileId"] = created["id"]
            self.touch("tx", t.customer_id, tx["transactionId"], tx)

    @staticmethod
    def tx_api(tx: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in tx.items() if not k.startswith("_")}

    def export_keys(self, t: Tenant) -> dict[str, Any]:
        return {
            "encryption_public_key": self.encryption_public_key_b64(),
            **self.tenant_credentials(t),
        }
