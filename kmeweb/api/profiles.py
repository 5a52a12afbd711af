"""Profiles: Bulk Enrollment's profiles for scripts. List, create, read, change, delete; the
enrollment token (Refresh, Extend, Never expires, Set expiry date, Reveal); Modify
Configuration; Associated User; Download Existing Inventory. Device imports live in
kmeweb.api.devices.

Every answer about one profile carries its `ETag`; a write sent with `If-Match` is refused
with 412 when the profile changed since (kmeweb.api.etag). Tokens show masked, as on the
pages: the full token is read with GET /profiles/{id}/token (write scope, audited each time),
the API's Reveal. Secret configuration values (the Wi-Fi password) are write-only: answers say
whether one is stored, never what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from flask import url_for
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import case

from kmeweb import csvexport
from kmeweb.api.etag import etag_of, expected_version
from kmeweb.api.paging import PageQuery, keyset
from kmeweb.api.routing import api, caller
from kmeweb.apitokens.models import Scope
from kmeweb.devices import services as devices
from kmeweb.directory import services as directory
from kmeweb.extensions import db
from kmeweb.outbox.models import SyncState
from kmeweb.profiles import services
from kmeweb.profiles.config import (
    AGENT_FIELDS,
    CUSTOM_KEY_TYPES,
    KME_FIELDS,
    SYSTEM_EXTRA_FIELDS,
    parse_bool,
)
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sync.status import SyncStatus, profile_statuses

TAG = "profiles"
READ, WRITE = Scope.PROFILES_READ, Scope.PROFILES_WRITE
# The list's order, one unique integer per profile for the cursor: the Samsung KME Default
# Profile first (0), then every other profile by id.
LIST_KEY = case((Profile.kind == ProfileKind.KME_DEFAULT, 0), else_=Profile.id).label("list_key")

CREATABLE = tuple(kind.value for kind in services.CREATABLE_KINDS)
Days = Annotated[int, Field(ge=services.TOKEN_DAYS_MIN, le=services.TOKEN_DAYS_MAX)]
DAYS_HELP = (
    f"Token validity in days from now ({services.TOKEN_DAYS_MIN} to "
    f"{services.TOKEN_DAYS_MAX}); null: never expires"
)


# --- Configuration (kmeweb.profiles.config's layout) ---------------------------------------


def _section(
    name: str, fields: Mapping[str, Callable], doc: str, hide: Sequence[str] = ()
) -> type[BaseModel]:
    """A model of one configuration section, its keys those the services validate
    (kmeweb.profiles.config): a yes/no setting is a boolean, any other a string. Unknown keys
    are refused. `hide`: write-only keys left out (of an answer's model)."""
    keys = {
        key: (bool | None if check is parse_bool else str | None, None)
        for key, check in fields.items()
        if key not in hide
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **keys)


ProfileAgentConfig = _section(
    "ProfileAgentConfig", AGENT_FIELDS, "Keys the MDM agent reads (admin-extras bundle)."
)
ProfileKmeConfig = _section(
    "ProfileKmeConfig", KME_FIELDS, "KME profile fields (Samsung Knox Mobile Enrollment only)."
)
ProfileSystemExtras = _section(
    "ProfileSystemExtras",
    SYSTEM_EXTRA_FIELDS,
    "Pre-Defined Android System Extras. `wifi_password` is write-only: null or absent keeps "
    "the stored one while a Wi-Fi SSID is set.",
)
ProfileSystemExtrasOut = _section(
    "ProfileSystemExtrasOut",
    SYSTEM_EXTRA_FIELDS,
    "Pre-Defined Android System Extras (the Wi-Fi password is never answered).",
    hide=services.SECRET_KEYS,
)


class ProfileCustomKey(BaseModel):
    """One Custom Android System Key."""

    model_config = ConfigDict(extra="forbid")

    key: str
    type: Literal[CUSTOM_KEY_TYPES] = "string"
    value: str | int | bool


class ProfileConfigurationIn(BaseModel):
    """Modify Configuration: the whole configuration, replacing the stored one."""

    model_config = ConfigDict(extra="forbid")

    agent: ProfileAgentConfig | None = None
    kme: ProfileKmeConfig | None = None
    system_extras: ProfileSystemExtras | None = None
    custom_keys: list[ProfileCustomKey] = Field(default_factory=list)
    wifi_password_clear: bool = Field(False, description="Remove the stored Wi-Fi password")

    def service_data(self) -> dict[str, Any]:
        """`config` and `secrets` as update_profile and create_profile take them."""
        config = self.model_dump(exclude={"wifi_password_clear"}, exclude_none=True)
        return {"config": config, "secrets": {"wifi_password_clear": self.wifi_password_clear}}


def _known(model: type[BaseModel], values: Any) -> BaseModel:
    """`model` from a stored section, keys of an older layout left out."""
    values = values if isinstance(values, Mapping) else {}
    return model.model_validate({k: v for k, v in values.items() if k in model.model_fields})


class ProfileConfigurationOut(BaseModel):
    agent: ProfileAgentConfig
    kme: ProfileKmeConfig
    system_extras: ProfileSystemExtrasOut
    custom_keys: list[ProfileCustomKey]
    has_wifi_password: bool = Field(description="A Wi-Fi password is stored (never answered)")

    @classmethod
    def of(cls, profile: Profile) -> ProfileConfigurationOut:
        config = profile.config or {}
        return cls(
            agent=_known(ProfileAgentConfig, config.get("agent")),
            kme=_known(ProfileKmeConfig, config.get("kme")),
            system_extras=_known(ProfileSystemExtrasOut, config.get("system_extras")),
            custom_keys=[_known(ProfileCustomKey, r) for r in config.get("custom_keys") or []],
            has_wifi_password=services.has_secret(profile, "wifi_password"),
        )


# --- Answers --------------------------------------------------------------------------------


class ProfileDeviceCounts(BaseModel):
    total: int
    registered: int
    pending: int = Field(description="Not registered yet: they enroll with the token")


class ProfileUserRef(BaseModel):
    id: int
    username: str


class ProfileSync(BaseModel):
    state: SyncState = Field(description="synced, pending, syncing or error, as the page shows")
    message: str | None
    at: datetime | None
    pending_devices: int
    error_devices: int
    last_synced_at: datetime | None


# ProfileOut's fields read as they are from the profile.
PROFILE_COLUMNS = (
    "id",
    "name",
    "kind",
    "is_default",
    "kme_profile_id",
    "token_expires_at",
    "without_token",
    "version",
    "created_at",
    "updated_at",
)


class ProfileOut(BaseModel):
    id: int
    name: str
    description: str
    kind: ProfileKind
    is_default: bool = Field(description="The Samsung KME Default Profile (listed first)")
    kme_profile_id: str | None
    devices: ProfileDeviceCounts
    end_user: ProfileUserRef | None = Field(description="The Associated User")
    token_masked: str | None = Field(description="The token's last characters only")
    token_expires_at: datetime | None = Field(description="null: never expires (or no token)")
    token_status: str | None = Field(description="never expires, expired or expires <date>")
    token_expired: bool
    without_token: bool = Field(description="Device registration without token")
    sync: ProfileSync
    version: int = Field(description='Also the ETag: "<id>-<version>"')
    created_at: datetime
    updated_at: datetime
    url: str

    @classmethod
    def of(
        cls,
        profile: Profile,
        counts: tuple[int, int, int],
        status: SyncStatus | None,
        usernames: Mapping[int, str],
    ) -> ProfileOut:
        total, registered, pending = counts
        status = status or SyncStatus(profile.sync_state)
        user_id = profile.end_user_id
        return cls(
            **{name: getattr(profile, name) for name in PROFILE_COLUMNS},
            description=profile.description or "",
            devices=ProfileDeviceCounts(total=total, registered=registered, pending=pending),
            end_user=ProfileUserRef(id=user_id, username=usernames[user_id])
            if user_id in usernames
            else None,
            token_masked=services.mask_token(profile.token) or None,
            token_status=services.token_status(profile) if profile.token else None,
            token_expired=bool(profile.token) and services.token_expired(profile),
            sync=ProfileSync(**vars(status), last_synced_at=profile.last_synced_at),
            url=url_for("api.get_profile", profile_id=profile.id),
        )


def profiles_out(profiles: Sequence[Profile]) -> list[ProfileOut]:
    """The answers of these profiles: their counts, statuses and users read for them only."""
    ids = [p.id for p in profiles]
    counts = services.profile_counts(db.session, ids)
    statuses = profile_statuses(db.session, ids)
    users = directory.usernames(db.session, [p.end_user_id for p in profiles])
    return [ProfileOut.of(p, counts[p.id], statuses.get(p.id), users) for p in profiles]


def _answer(profile: Profile, status: int = 200, headers: Mapping[str, str] | None = None):
    """One profile's answer with its ETag."""
    return profiles_out([profile])[0], status, {"ETag": etag_of(profile), **(headers or {})}


def _version(profile_id: int) -> int:
    """The version a write applies to: If-Match honoured (412 when stale). Raises NotFound."""
    return expected_version(services.get_profile_or_404(db.session, profile_id))


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    next_cursor: str | None


class ProfileQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="Matches name or description")


class ProfileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal[CREATABLE] = Field(ProfileKind.KME.value, description="The profile type")
    name: str = Field(description=services.NAME_RULE)
    description: str = ""
    without_token: bool = False
    end_user_id: int | None = Field(None, description="The Associated User")
    token_expiry_days: Days | None = Field(services.TOKEN_DAYS_DEFAULT, description=DAYS_HELP)
    configuration: ProfileConfigurationIn | None = None

    def service_data(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"configuration"})
        return data | (self.configuration.service_data() if self.configuration else {})


class ProfilePatch(BaseModel):
    """The fields to change; absent ones stay. The Default Profile takes a description only."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description=services.NAME_RULE)
    description: str | None = None
    without_token: bool = False
    end_user_id: int | None = Field(None, description="The Associated User; null: none")
    token_expiry_days: Days | None = Field(None, description=DAYS_HELP)
    configuration: ProfileConfigurationIn | None = Field(None, description="Replaces it whole")

    def service_data(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True, exclude={"configuration"})
        return data | (self.configuration.service_data() if self.configuration else {})


class ProfileDeleted(BaseModel):
    id: int
    devices_moved_to_default: int


class ProfileTokenRenew(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_expiry_days: Days | None = Field(services.TOKEN_DAYS_DEFAULT, description=DAYS_HELP)


class ProfileTokenExpiry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_expiry_days: Days = Field(description="The token expires this many days from now")


class ProfileTokenOut(BaseModel):
    token: str = Field(description="The full enrollment token: keep it secret")
    token_expires_at: datetime | None
    without_token: bool


class ProfileUserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    end_user_id: int | None = Field(description="The end user to associate; null: none")


# --- Routes ---------------------------------------------------------------------------------


@api.get("/profiles", scope=READ, tag=TAG, query=ProfileQuery, answers={200: ProfilePage})
def list_profiles(query: ProfileQuery) -> ProfilePage:
    """Bulk Enrollment: the Samsung KME Default Profile first (`is_default`), then the others
    by id; `q` searches name and description. Device counts are those of the page's profiles."""
    stmt = services.list_profiles_query(query.q).add_columns(LIST_KEY)
    rows, cursor = keyset(db.session, stmt, LIST_KEY, query)
    return ProfilePage(items=profiles_out([row[0] for row in rows]), next_cursor=cursor)


@api.post("/profiles", scope=WRITE, tag=TAG, body=ProfileCreate, answers={201: ProfileOut})
def create_profile(json: ProfileCreate):
    """Add: a Samsung Knox Mobile Enrollment profile (sent to KME, see `sync`) or a
    Self-Maintained one, with a new token (read it with GET /profiles/{id}/token)."""
    profile = services.create_profile(db.session, json.service_data(), caller())
    db.session.commit()
    return _answer(profile, 201, {"Location": url_for("api.get_profile", profile_id=profile.id)})


@api.get("/profiles/<int:profile_id>", scope=READ, tag=TAG, answers={200: ProfileOut, 404: None})
def get_profile(profile_id: int):
    """One profile, with its ETag."""
    return _answer(services.get_profile_or_404(db.session, profile_id))


@api.patch(
    "/profiles/<int:profile_id>",
    scope=WRITE,
    tag=TAG,
    body=ProfilePatch,
    answers={200: ProfileOut, 404: None, 409: None, 412: None},
)
def update_profile(profile_id: int, json: ProfilePatch):
    """Edit: change the fields sent (If-Match honoured). A KME profile's change goes to KME."""
    version = _version(profile_id)
    data = json.service_data()
    profile = services.update_profile(db.session, profile_id, data, version, caller())
    db.session.commit()
    return _answer(profile)


@api.delete(
    "/profiles/<int:profile_id>",
    scope=WRITE,
    tag=TAG,
    answers={200: ProfileDeleted, 404: None, 409: None, 412: None},
)
def delete_profile(profile_id: int) -> ProfileDeleted:
    """Delete (If-Match honoured): its devices go back to the Default Profile, which itself
    cannot be deleted (409)."""
    _version(profile_id)
    moved = services.delete_profile(db.session, profile_id, caller())
    db.session.commit()
    return ProfileDeleted(id=profile_id, devices_moved_to_default=moved)


TOKEN_ANSWERS: dict[int, type[BaseModel] | None] = {
    200: ProfileOut,
    404: None,
    409: None,
    412: None,
}


@api.post(
    "/profiles/<int:profile_id>/token/refresh",
    scope=WRITE,
    tag=TAG,
    body=ProfileTokenRenew,
    answers=TOKEN_ANSWERS,
)
def refresh_profile_token(profile_id: int, json: ProfileTokenRenew):
    """Refresh Token: a new token; the old one stops working at once. The answer shows it
    masked, as the page does: read it with GET /profiles/{id}/token."""
    version = _version(profile_id)
    days = json.token_expiry_days
    profile = services.refresh_token(db.session, profile_id, days, caller(), version)
    db.session.commit()
    return _answer(profile)


@api.post(
    "/profiles/<int:profile_id>/token/extend",
    scope=WRITE,
    tag=TAG,
    body=ProfileTokenRenew,
    answers=TOKEN_ANSWERS,
)
def extend_profile_token(profile_id: int, json: ProfileTokenRenew):
    """Extend: the same token, valid `token_expiry_days` longer, counted from its current
    expiry (never earlier; null: never expires)."""
    version = _version(profile_id)
    days = json.token_expiry_days
    profile = services.extend_token(db.session, profile_id, days, caller(), True, version)
    db.session.commit()
    return _answer(profile)


@api.post(
    "/profiles/<int:profile_id>/token/never-expires",
    scope=WRITE,
    tag=TAG,
    answers=TOKEN_ANSWERS,
)
def profile_token_never_expires(profile_id: int):
    """Never expires: the same token, without an expiry."""
    version = _version(profile_id)
    profile = services.extend_token(db.session, profile_id, None, caller(), True, version)
    db.session.commit()
    return _answer(profile)


@api.post(
    "/profiles/<int:profile_id>/token/expiry",
    scope=WRITE,
    tag=TAG,
    body=ProfileTokenExpiry,
    answers=TOKEN_ANSWERS,
)
def set_profile_token_expiry(profile_id: int, json: ProfileTokenExpiry):
    """Set expiry date: the same token expires `token_expiry_days` from now, whatever its
    expiry was (a token that never expires gets one)."""
    version = _version(profile_id)
    days = json.token_expiry_days
    profile = services.set_token_expiry(db.session, profile_id, days, caller(), version)
    db.session.commit()
    return _answer(profile)


@api.get(
    "/profiles/<int:profile_id>/token",
    scope=WRITE,
    tag=TAG,
    answers={200: ProfileTokenOut, 404: None},
)
def reveal_profile_token(profile_id: int):
    """Reveal: the full token. Audited each time, and a write scope's right, as Reveal is an
    admin's on the page (a viewer sees tokens masked)."""
    token = services.reveal_token(db.session, profile_id, caller())
    db.session.commit()
    profile = services.get_profile_or_404(db.session, profile_id)
    out = ProfileTokenOut(
        token=token, token_expires_at=profile.token_expires_at, without_token=profile.without_token
    )
    return out, 200, {"ETag": etag_of(profile), "Cache-Control": "no-store"}


@api.get(
    "/profiles/<int:profile_id>/configuration",
    scope=READ,
    tag=TAG,
    answers={200: ProfileConfigurationOut, 404: None},
)
def get_profile_configuration(profile_id: int):
    """The configuration as Modify Configuration shows it: the Wi-Fi password never, only
    whether one is stored (`has_wifi_password`)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    return ProfileConfigurationOut.of(profile), 200, {"ETag": etag_of(profile)}


@api.put(
    "/profiles/<int:profile_id>/configuration",
    scope=WRITE,
    tag=TAG,
    body=ProfileConfigurationIn,
    answers={200: ProfileConfigurationOut, 404: None, 409: None, 412: None},
)
def put_profile_configuration(profile_id: int, json: ProfileConfigurationIn):
    """Modify Configuration: replace the configuration (If-Match honoured). A Wi-Fi password
    left out is kept while the SSID stays; `wifi_password_clear` removes it."""
    version = _version(profile_id)
    data = json.service_data()
    profile = services.update_profile(db.session, profile_id, data, version, caller())
    db.session.commit()
    return ProfileConfigurationOut.of(profile), 200, {"ETag": etag_of(profile)}


@api.put(
    "/profiles/<int:profile_id>/user",
    scope=WRITE,
    tag=TAG,
    body=ProfileUserIn,
    answers={200: ProfileOut, 404: None, 409: None, 412: None},
)
def put_profile_user(profile_id: int, json: ProfileUserIn):
    """Change Associate User (null clears it; If-Match honoured)."""
    _version(profile_id)
    user_id = json.end_user_id
    profile = services.set_profile_user(db.session, profile_id, user_id, caller())
    db.session.commit()
    return _answer(profile)


@api.get(
    "/profiles/<int:profile_id>/inventory",
    scope=READ,
    tag=TAG,
    answers={200: None, 404: None},
    raw=True,
)
def profile_inventory(profile_id: int):
    """Download Existing Inventory: the page's CSV (text/csv; cells a spreadsheet would run
    as a formula start with ')."""
    name, rows = devices.inventory_download(db.session, profile_id)
    return csvexport.csv_response(name, devices.INVENTORY_HEADER, rows)
