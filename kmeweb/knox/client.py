"""The KME cloud API client (no Flask, no database).

One `KnoxClient` per Knox tenant configuration. It is safe to share between threads (token
renewal is locked; `requests.Session` is used for connection reuse). Every call may block on
the network and sleep while retrying; only background jobs should call it.

Errors: `KnoxTransientError` after the last retry of a timeout, connection error, 429, 502, 503
or 504; `KnoxRejectedError` for other 4xx/5xx (never retried); `KnoxAuthError` when credentials
are refused or a renewed token is refused again; `KnoxConfigError` for unusable configuration.
Batched device operations attach what they achieved before failing as `exc.partial_result`.

Retried requests: a request that timed out may have been applied by Knox. Assign and unassign
are idempotent; a retried delete may report ids as not found; a retried profile create may
answer BULK_ENROLL_PROFILE_NAME_CONFLICT (callers look the profile up by name).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from json import loads as json_loads
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests

from kmeweb import gcpause
from kmeweb.knox import bodies
from kmeweb.knox.auth import LegacyTokenProvider, OAuthTokenProvider, TokenProvider
from kmeweb.knox.config import KnoxConfig
from kmeweb.knox.crypto import encrypt_value, load_public_key
from kmeweb.knox.endpoints import resolve_endpoints
from kmeweb.knox.errors import (
    API_KEY_NON_UNIQUE_JWTID,
    BULK_ENROLL_DEVICE_INVALID,
    DEVICE_LEVEL_CODES,
    DEVICE_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    TOKEN_REJECTED_CODES,
    TOO_MANY_DEVICES,
    KnoxAuthError,
    KnoxConfigError,
    KnoxError,
    KnoxRejectedError,
    KnoxTransientError,
)
from kmeweb.knox.types import (
    BatchResult,
    Device,
    DeviceAssignment,
    DevicePage,
    Outcome,
    Profile,
    ProfileAlias,
    Reseller,
    Transaction,
    Upload,
)

log = logging.getLogger("kmeweb.knox")

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
#: Codes an upload approval batch can be refused with because of one unknown upload id.
UPLOAD_LEVEL_CODES = frozenset({RESOURCE_NOT_FOUND})
_REDACTED = "[redacted]"
T = TypeVar("T")


def _parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


class KnoxClient:
    """Client for the Knox Mobile Enrollment API of one tenant.

    `session`, `sleep`, `clock` and `rng` can be supplied (e.g. a session with custom adapters);
    by default a new requests.Session, time.sleep, time.time and random.random are used.
    Raises KnoxConfigError when the configuration lacks what its auth mode needs.
    """

    def __init__(
        self,
        config: KnoxConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        observer: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.config = config
        # Told (endpoint name, HTTP status or "timeout"/"connection_error", seconds) after every
        # HTTP attempt: the console records its Knox call metrics through it.
        self._observer = observer
        self._endpoints = resolve_endpoints(config.paths)
        self._base = config.base_url.rstrip("/")
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._secrets = [s for s in config.secrets() if len(s) >= 4]
        self._batch_size = max(1, int(config.batch_size))
        self._encryption_key = None
        if config.auth_mode == "oauth":
            self._auth: TokenProvider = OAuthTokenProvider(config, self._fetch_token, clock)
        elif config.auth_mode == "legacy":
            if not config.customer_id:
                raise KnoxConfigError("legacy auth needs customer_id (KME requires it)")
            self._auth = LegacyTokenProvider(config, self._fetch_token, clock)
        else:
            raise KnoxConfigError(f"unknown auth_mode {config.auth_mode!r}")

    def close(self) -> None:
        """Close the HTTP session if the client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> KnoxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def batch_size(self) -> int:
        """Current device batch size (lowered for good when Knox answers TOO_MANY_DEVICES)."""
        return self._batch_size

    def check_connection(self) -> int:
        """Authenticate and read one device page; returns the tenant's device count.

        Raises KnoxAuthError, KnoxRejectedError or KnoxTransientError.
        """
        page = next(self.iter_device_pages(page_size=1))
        return page.total_count

    def iter_device_pages(
        self, *, changed_after: datetime | None = None, page_size: int | None = None
    ) -> Iterator[DevicePage]:
        """Yield `devices/list` pages (0-based) until `totalCount` rows arrived or a page is empty.

        `changed_after` limits the listing to devices whose record changed after that time.
        One HTTP call per page, made lazily as the caller iterates.
        """
        size = page_size or self.config.page_size
        page_num = 0
        seen = 0
        while True:
            params = bodies.build_page_params(page_num, size)
            if changed_after is not None:
                params["changedAfter"] = bodies.format_changed_after(
                    changed_after, self.config.changed_after_format
                )
            # A page is thousands of small dicts: with the cyclic collector on, building them
            # set off collections that walked the whole heap, a third of the listing's time
            # (bench/knox_list.py). The page holds no cycles; reference counting frees it.
            with gcpause.paused():
                page = bodies.parse_device_page(self._call("devices_list", params=params), page_num)
            yield page
            seen += len(page.devices)
            if not page.devices or seen >= page.total_count:
                return
            page_num += 1

    def iter_devices(
        self, *, changed_after: datetime | None = None, page_size: int | None = None
    ) -> Iterator[Device]:
        """Yield every device of `iter_device_pages`, page by page."""
        for page in self.iter_device_pages(changed_after=changed_after, page_size=page_size):
            yield from page.devices

    def list_devices(
        self, *, changed_after: datetime | None = None, page_size: int | None = None
    ) -> list[Device]:
        """All devices (or those changed after `changed_after`), fetching every page."""
        return list(self.iter_devices(changed_after=changed_after, page_size=page_size))

    def assign_profile(
        self,
        profile_id: str,
        devices: Iterable[str | DeviceAssignment],
        *,
        aliases: Mapping[str, str] | None = None,
    ) -> BatchResult:
        """Assign a profile to devices (KME id, IMEI/MEID or serial), in batches.

        A DeviceAssignment may carry the device's user name and password: both are encrypted
        with `config.encryption_public_key` (RSA PKCS#1 v1.5, base64) and sent as `userName` and
        `userToken`. Assigning is also how a device's credentials change. Returns one outcome
        per device id sent. `aliases` ({other name: id sent}, e.g. IMEI -> KME id) lets an answer
        that names a device differently from the request count for the id sent. Raises
        KnoxConfigError (credentials without an encryption key, or a value over 245 bytes)
        before sending anything; Knox errors as the class docstring says.
        """
        items: dict[str, dict[str, Any]] = {}
        for d in devices:
            a = DeviceAssignment(d) if isinstance(d, str) else d
            item: dict[str, Any] = {"device_id": a.device_id, "user_name": None, "user_token": None}
            if a.user_name is not None:
                item["user_name"] = self._encrypt(a.user_name)
            if a.password is not None:
                item["user_token"] = self._encrypt(a.password)
            items[a.device_id] = item

        def send(chunk: list[dict[str, Any]]) -> BatchResult:
            body = self._call("devices_assign", json=bodies.build_assign_body(profile_id, chunk))
            return bodies.parse_assign_response(body, [c["device_id"] for c in chunk], aliases)

        return self._batched(list(items.values()), lambda c: c["device_id"], send)

    def unassign_profile(
        self,
        device_ids: Iterable[str],
        *,
        version: int = 2,
        aliases: Mapping[str, str] | None = None,
    ) -> BatchResult:
        """Unassign devices' profiles in batches (v2: partial success; v1: all-or-nothing, so a
        rejected batch is split to find the bad ids). Returns one outcome per id; `aliases` as
        for `assign_profile`."""
        name = "devices_unassign_v2" if version == 2 else "devices_unassign_v1"

        def send(chunk: list[str]) -> BatchResult:
            body = self._call(name, json=bodies.build_unassign_body(chunk))
            return bodies.parse_unassign_response(body, chunk, aliases)

        return self._batched(_unique(device_ids), lambda i: i, send)

    def delete_devices(
        self, device_ids: Iterable[str], *, aliases: Mapping[str, str] | None = None
    ) -> BatchResult:
        """Delete devices from KME in batches. Returns one outcome per id (not found is not an
        error for the batch); `aliases` as for `assign_profile`."""

        def send(chunk: list[str]) -> BatchResult:
            body = self._call("devices_delete", json=bodies.build_delete_body(chunk))
            return bodies.parse_delete_response(body, chunk, aliases)

        return self._batched(_unique(device_ids), lambda i: i, send)

    def iter_uploads(self, *, page_size: int | None = None) -> Iterator[Upload]:
        """Yield every reseller upload, page by page."""
        yield from self._paged("uploads_list", bodies.parse_upload_page, page_size)

    def list_uploads(self, *, page_size: int | None = None) -> list[Upload]:
        """All reseller uploads (pending and approved)."""
        return list(self.iter_uploads(page_size=page_size))

    def approve_uploads(self, upload_ids: Iterable[str]) -> BatchResult:
        """Approve reseller uploads. Returns one outcome per upload id.

        A batch refused with 404 RESOURCE_NOT_FOUND because of an unknown upload id is split
        until that id is found (`not_found`), so the known uploads are still approved.
        """

        def send(chunk: list[str]) -> BatchResult:
            body = self._call("uploads_approve", json=bodies.build_approve_uploads_body(chunk))
            return bodies.parse_approve_uploads_response(body, chunk)

        return self._batched(_unique(upload_ids), lambda i: i, send, UPLOAD_LEVEL_CODES)

    def list_resellers(self) -> list[Reseller]:
        """Resellers linked to the tenant [endpoint Unverified, see endpoints.py]."""
        return list(self._paged("reseller_list", bodies.parse_reseller_page, None))

    def approve_reseller(
        self,
        reseller_id: str,
        *,
        approve: bool = True,
        auto_approve: bool | None = None,
        default_profile_id: str | None = None,
    ) -> Reseller:
        """Approve a reseller link and/or set its preferences (auto-approve, default profile)."""
        body = bodies.build_reseller_approval_body(
            reseller_id,
            approve=approve,
            auto_approve=auto_approve,
            default_profile_id=default_profile_id,
        )
        return bodies.parse_reseller(self._call("reseller_approvals", json=body))

    def create_profile_alias(
        self, reseller_id: str, profile_id: str, name: str | None = None
    ) -> ProfileAlias:
        """Share a profile with a reseller through a profile alias."""
        body = bodies.build_profile_alias_body(reseller_id, profile_id, name)
        return bodies.parse_profile_alias(self._call("profile_alias_create", json=body))

    def update_profile_alias(
        self, alias_id: str, reseller_id: str, profile_id: str, name: str | None = None
    ) -> ProfileAlias:
        """Point a profile alias at another profile (or rename it)."""
        body = bodies.build_profile_alias_body(reseller_id, profile_id, name)
        return bodies.parse_profile_alias(
            self._call("profile_alias_update", path_params={"alias_id": alias_id}, json=body)
        )

    def delete_profile_alias(self, alias_id: str) -> None:
        """Delete a profile alias."""
        self._call("profile_alias_delete", path_params={"alias_id": alias_id})

    def list_profiles(
        self, *, reseller_id: str | None = None, page_size: int | None = None
    ) -> list[Profile]:
        """All KME profiles (with `reseller_id`: with that reseller's profile aliases)."""
        extra = {"resellerId": reseller_id} if reseller_id else None
        return list(self._paged("profiles_list", bodies.parse_profile_page, page_size, extra))

    def get_profile(self, profile_id: str) -> Profile:
        """One profile. Raises KnoxRejectedError (PROFILE_NOT_FOUND...) when it does not exist."""
        body = self._call("profiles_get", path_params={"profile_id": profile_id})
        return bodies.parse_profile(body)

    def find_profile_by_name(self, name: str) -> Profile | None:
        """The profile named `name` (case-insensitive), or None."""
        wanted = name.casefold()
        for p in self.list_profiles():
            if p.name.casefold() == wanted:
                return p
        return None

    def create_profile(self, profile: Profile) -> Profile:
        """Create a profile synchronously; returns it with its Knox id.

        Raises KnoxRejectedError with BULK_ENROLL_PROFILE_INVALID (rules of kme-api.md 2.2) or
        BULK_ENROLL_PROFILE_NAME_CONFLICT (409).
        """
        body = self._call("profiles_create", json=bodies.build_profile_body(profile))
        return _merge_profile(profile, bodies.parse_profile(body))

    def create_profile_async(
        self,
        profile: Profile,
        *,
        wait: bool = True,
        poll_interval: float = 1.0,
        timeout: float = 300.0,
    ) -> Transaction:
        """Create a profile with `createAsync`; with `wait`, poll `profiles/status` until done.

        Returns the last Transaction seen (check `.done`; `.profile_id` once complete). Raises
        KnoxRejectedError when the request is refused or the transaction ends Failed.
        """
        tid = bodies.parse_async_create_response(
            self._call("profiles_create_async", json=bodies.build_profile_body(profile))
        )
        tx = Transaction(transaction_id=tid, state="Pending")
        deadline = self._clock() + timeout
        while wait and not tx.done and self._clock() < deadline:
            self._sleep(poll_interval)
            tx = self.get_transaction(tid) or tx
        if tx.done and not tx.succeeded:
            raise KnoxRejectedError(
                f"Knox profile transaction {tid} ended {tx.state}: {tx.message or 'no detail'}",
                data=tx.message,
            )
        return tx

    def list_transactions(self, transaction_id: str | None = None) -> list[Transaction]:
        """Async profile transactions from `profiles/status`."""
        params: dict[str, Any] = bodies.build_page_params(0, self.config.page_size)
        if transaction_id:
            params["transactionId"] = transaction_id
        txs, _ = bodies.parse_transactions(self._call("profiles_status", params=params))
        return txs

    def get_transaction(self, transaction_id: str) -> Transaction | None:
        """One async transaction, or None when Knox does not report it."""
        for tx in self.list_transactions(transaction_id):
            if tx.transaction_id == transaction_id:
                return tx
        return None

    def update_profile(self, profile: Profile) -> Profile:
        """Replace a profile (full replace: send every field). `profile.id` must be set."""
        if not profile.id:
            raise KnoxConfigError("update_profile needs profile.id")
        body = self._call(
            "profiles_update",
            path_params={"profile_id": profile.id},
            json=bodies.build_profile_body(profile),
        )
        return _merge_profile(profile, bodies.parse_profile(body))

    def delete_profile(self, profile_id: str) -> None:
        """Delete a profile. Raises KnoxRejectedError when it does not exist."""
        self._call("profiles_delete", path_params={"profile_id": profile_id})

    def _paged(
        self,
        name: str,
        parse: Callable[[Any], tuple[list[T], int]],
        page_size: int | None,
        extra: dict[str, Any] | None = None,
    ) -> Iterator[T]:
        size = page_size or self.config.page_size
        page_num, seen = 0, 0
        while True:
            params = {**bodies.build_page_params(page_num, size), **(extra or {})}
            items, total = parse(self._call(name, params=params))
            yield from items
            seen += len(items)
            if not items or seen >= total:
                return
            page_num += 1

    def _batched(
        self,
        items: Sequence[T],
        key: Callable[[T], str],
        send: Callable[[list[T]], BatchResult],
        split_codes: frozenset[int] = DEVICE_LEVEL_CODES,
    ) -> BatchResult:
        result = BatchResult()
        pending: deque[list[T]] = deque(_chunks(items, self._batch_size))
        try:
            while pending:
                chunk = pending.popleft()
                if len(chunk) > self._batch_size:  # planned before Knox lowered the size
                    pending.extendleft(reversed(_chunks(chunk, self._batch_size)))
                    continue
                try:
                    result.merge(send(chunk))
                except KnoxRejectedError as exc:
                    if exc.code == TOO_MANY_DEVICES and len(chunk) > 1:
                        self._batch_size = min(self._batch_size, max(1, len(chunk) // 2))
                        log.info("Knox TOO_MANY_DEVICES: batch size now %d", self._batch_size)
                        pending.extendleft(reversed(_chunks(chunk, self._batch_size)))
                    elif exc.code in split_codes and len(chunk) > 1:
                        # All-or-nothing answer caused by some id(s): split to find them.
                        mid = len(chunk) // 2
                        pending.extendleft([chunk[mid:], chunk[:mid]])
                    elif exc.code in split_codes:
                        outcome: Outcome = (
                            "not_found"
                            if exc.code in (DEVICE_NOT_FOUND, RESOURCE_NOT_FOUND)
                            else "invalid"
                            if exc.code == BULK_ENROLL_DEVICE_INVALID
                            else "failed"
                        )
                        # Samsung's message and its detail, as a per-device entry has them.
                        said = dict.fromkeys(str(p) for p in (exc.knox_message, exc.data) if p)
                        reason = ": ".join(said) or str(exc)
                        result.set(key(chunk[0]), outcome, reason, exc.code)
                        result.batches += 1
                    else:
                        raise
        except KnoxError as exc:
            exc.partial_result = result
            raise
        return result

    def _encrypt(self, value: str) -> str:
        if self._encryption_key is None:
            if not self.config.encryption_public_key:
                raise KnoxConfigError("per-device credentials need config.encryption_public_key")
            try:
                self._encryption_key = load_public_key(self.config.encryption_public_key)
            except ValueError as exc:
                raise KnoxConfigError(f"encryption_public_key: {exc}") from None
        try:
            return encrypt_value(value, self._encryption_key)
        except ValueError as exc:
            raise KnoxConfigError(str(exc)) from None

    def _call(
        self,
        name: str,
        *,
        path_params: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One authenticated API call; renews the token once on a 401 and retries once."""
        method, path = self._endpoints[name]
        if path_params:
            path = path.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})
        url = self._base + path
        params = dict(params or {})
        cid = self.config.customer_id
        if cid:
            if method in ("GET", "DELETE"):
                params.setdefault("customerId", cid)
            else:
                json = {"customerId": cid, **(json or {})}
        renewed = resigned = False
        while True:
            # kme-api.md 1a step 4: Content-Type on every call, GET and DELETE included.
            headers = {"Content-Type": "application/json", **self._auth.headers()}
            if self.config.managed_tenant_id:
                headers["x-wsm-managed-tenantid"] = self.config.managed_tenant_id
            try:
                return self._send(
                    method, url, path, headers=headers, params=params, json=json, endpoint=name
                )
            except KnoxRejectedError as exc:
                if exc.code == API_KEY_NON_UNIQUE_JWTID and not resigned and self._auth.resign():
                    # The server refuses a signed token it has seen: sign afresh, retry once.
                    log.info("Knox %s %s: reused jti refused, signing every request", method, path)
                    resigned = True
                    continue
                rejected_token = exc.status == 401 or (
                    exc.status == 403 and exc.code in TOKEN_REJECTED_CODES
                )
                if not rejected_token:
                    raise
                if renewed:
                    raise KnoxAuthError.from_rejected(exc, str(exc), method, path) from None
                log.info("Knox %s %s: token refused (HTTP %s), renewing", method, path, exc.status)
                renewed = True
                self._auth.invalidate()

    def _observe(self, endpoint: str, status: str, started: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(endpoint or "unknown", status, time.monotonic() - started)
        except Exception:  # noqa: BLE001 - metrics must never fail a Knox call
            log.debug("Knox call observer failed", exc_info=True)

    def _fetch_token(
        self, name: str, url: str | None, *, form: dict | None = None, json: Any = None
    ) -> Any:
        if url is None:
            method, path = self._endpoints[name]
            url = self._base + path
        else:
            method, path = "POST", urlsplit(url).path
        try:
            return self._send(method, url, path, headers={}, data=form, json=json, endpoint=name)
        except KnoxRejectedError as exc:
            raise KnoxAuthError.from_rejected(
                exc, f"Knox refused the credentials: {exc}", method, path
            ) from None

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict | None = None,
        endpoint: str = "",
    ) -> Any:
        """Send with retries of transient failures; return the parsed JSON (None if empty)."""
        policy = self.config.retry
        headers = {"Accept": "application/json", "User-Agent": self.config.user_agent, **headers}
        secrets = [*self._secrets, *(v for v in headers.values() if len(v) >= 16)]
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            retry_after: float | None = None
            status: int | None = None
            fields: dict[str, Any] = {}
            try:
                resp = self._session.request(
                    method,
                    url,
                    params=params or None,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=(self.config.connect_timeout, self.config.read_timeout),
                )
            except requests.Timeout:
                self._observe(endpoint, "timeout", started)
                failure = f"Knox {method} {path}: timed out"
            except requests.ConnectionError:
                self._observe(endpoint, "connection_error", started)
                failure = f"Knox {method} {path}: connection failed"
            except requests.RequestException as exc:
                self._observe(endpoint, "error", started)
                raise KnoxError(
                    f"Knox {method} {path}: request failed ({type(exc).__name__})",
                    method=method,
                    path=path,
                ) from None
            else:
                elapsed_ms = (time.monotonic() - started) * 1000
                self._observe(endpoint, str(resp.status_code), started)
                log.debug("Knox %s %s -> %s (%.0f ms)", method, path, resp.status_code, elapsed_ms)
                if resp.status_code < 400:
                    content = resp.content
                    if not content or content.isspace():
                        return None
                    try:
                        return json_loads(content)  # bytes straight in: no text decoding copy
                    except ValueError:
                        raise KnoxRejectedError(
                            f"Knox {method} {path}: HTTP {resp.status_code} with a non-JSON body",
                            status=resp.status_code,
                            method=method,
                            path=path,
                        ) from None
                fields = _error_fields(resp)
                for key in ("data", "knox_message"):  # in case Knox echoes what we sent
                    if isinstance(fields.get(key), str):
                        fields[key] = _scrub(fields[key], secrets)
                text = _scrub(_error_text(method, path, resp.status_code, fields), secrets)
                if resp.status_code not in TRANSIENT_STATUSES:
                    raise KnoxRejectedError(
                        text, status=resp.status_code, method=method, path=path, **fields
                    )
                failure = text
                retry_after = _parse_retry_after(resp.headers.get("Retry-After"), self._clock())
                status = resp.status_code
            if attempt >= policy.max_attempts or (
                retry_after is not None and retry_after > policy.max_retry_after
            ):
                raise KnoxTransientError(
                    f"{failure} (gave up after {attempt} attempt(s))",
                    retry_after=retry_after,
                    attempts=attempt,
                    status=status,
                    method=method,
                    path=path,
                    **fields,
                )
            if retry_after is not None:
                delay = retry_after
            else:
                cap = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
                delay = cap * self._rng()
            log.warning(
                "%s; retry %d/%d in %.2f s", failure, attempt, policy.max_attempts - 1, delay
            )
            self._sleep(delay)


def _error_fields(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {"code": None, "knox_message": None, "data": None, "error_id": None}
    code = body.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    return {
        "code": code,
        "knox_message": _opt_str(body.get("message") or body.get("error")),
        "data": body.get("data") if body.get("data") is not None else body.get("error_description"),
        "error_id": _opt_str(body.get("errorId")),
    }


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _error_text(method: str, path: str, status: int, fields: dict[str, Any]) -> str:
    parts = [f"Knox {method} {path}: HTTP {status}"]
    if fields.get("code") is not None:
        parts.append(str(fields["code"]))
    if fields.get("knox_message"):
        parts.append(str(fields["knox_message"]))
    text = " ".join(parts)
    if fields.get("data"):
        text += f": {str(fields['data'])[:300]}"
    return text


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and s in text:
            text = text.replace(s, _REDACTED)
    return text


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in ids))


def _chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _merge_profile(sent: Profile, got: Profile) -> Profile:
    """The profile Knox returned, filled in from what was sent when Knox echoed only some fields
    (e.g. just the id)."""
    if not got.name:
        got.name = sent.name
    for attr in (
        "description",
        "company_name",
        "supported_mdm",
        "mdm_apk_url",
        "mdm_admin_component",
        "mdm_signature_checksum",
        "mdm_server_uri",
        "custom_json",
        "skip_setup_wizard",
        "allow_user_cancel",
        "do_enabled",
        "ae_enabled",
        "support_phone_number",
        "support_email_address",
    ):
        if getattr(got, attr) is None:
            setattr(got, attr, getattr(sent, attr))
    if got.id is None:
        got.id = sent.id
    return got
