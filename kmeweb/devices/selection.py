"""The devices an admin selected on a profile's page, as one value.

A selection is explicit ids, or "all N matching" the device table's filter; either way within
one profile on the pages. The JSON API also selects explicit ids from anywhere (`profile_id`
None: a script found them by searching across profiles). The pages parse it once from the
request (`DeviceSelection.from_values`), dialogs carry it in hidden fields, and
`kmeweb.devices.services.resolve_selection` turns it into ids when the action runs, so "all
matching" is read again then, never limited to one page.

The filter has one set of names everywhere a request carries it: `q`, `registration`, `sync`,
`rule` (the routing rule that placed the device), `kme` (changed in the Samsung portal, or not
found in KME: kmeweb.devices.models.KmeState).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kmeweb.devices.models import KmeState, Registration
from kmeweb.ids import parse_id
from kmeweb.outbox.models import SyncState

#: The sync states the device table filters by.
SYNC_FILTER_STATES = (SyncState.SYNCED, SyncState.PENDING, SyncState.ERROR)
#: The device table's filters with their labels ("" = any).
REGISTRATION_FILTERS = {"": "Any", **Registration.labels()}
SYNC_FILTERS = {"": "Any", **{s.value: s.label.capitalize() for s in SYNC_FILTER_STATES}}
KME_FILTERS = {"": "Any", **KmeState.labels()}


class Values(Protocol):
    """What a selection is parsed from: request.args or request.form."""

    def get(self, key: str, default: str | None = None) -> str | None: ...

    def getlist(self, key: str) -> list[str]: ...


@dataclass(frozen=True)
class DeviceFilter:
    """The device table's search and filters ("" = any). `rule` is the id (as text) of the
    routing rule that placed the device; `kme` a KmeState (changed in the Samsung portal, not
    found in KME)."""

    q: str = ""
    registration: str = ""
    sync: str = ""
    rule: str = ""
    kme: str = ""

    @classmethod
    def from_values(cls, values: Values) -> DeviceFilter:
        return cls(
            q=values.get("q") or "",
            registration=values.get("registration") or "",
            sync=values.get("sync") or "",
            rule=rule_value(values.get("rule")),
            kme=kme_value(values.get("kme")),
        )

    @property
    def active(self) -> bool:
        """True when the table shows only some of the profile's devices."""
        return bool(self.q or self.registration or self.sync or self.rule or self.kme)

    @property
    def rule_id(self) -> int | None:
        """The rule filtered by, or None (any)."""
        return parse_id(self.rule) if self.rule else None

    def known_total(self, counts: tuple[int, int, int]) -> int | None:
        """The table's total from the profile's (total, registered, pending) counts, when they
        say it: unless it is searched or filtered by sync state or rule."""
        if self.q or self.sync or self.rule or self.kme:
            return None
        return {
            "": counts[0],
            Registration.REGISTERED: counts[1],
            Registration.PENDING: counts[2],
        }.get(self.registration)

    def words(self, rule_names: Mapping[int, str] | None = None) -> str:
        """The filter in the words of the table's fields, for "All N devices matching ...":
        'the search “x”, Registration: Not registered, Placed by rule: Sales' ("" when nothing
        filters); `rule_names` ({rule id: name}) names the rule, else its number does."""
        words = [f"the search “{self.q}”"] if self.q else []
        if self.registration:
            words.append(f"Registration: {REGISTRATION_FILTERS.get(self.registration, '?')}")
        if self.sync:
            words.append(f"Sync state: {SYNC_FILTERS.get(self.sync, '?')}")
        if self.rule_id is not None:
            name = (rule_names or {}).get(self.rule_id) or f"#{self.rule_id}"
            words.append(f"Placed by rule: {name}")
        if self.kme:
            words.append(f"Samsung: {KME_FILTERS.get(self.kme, '?')}")
        return ", ".join(words)

    def params(self) -> dict[str, str]:
        """The filter as a job's params keep it (DeviceFilter(**params) reads it back)."""
        return {
            "q": self.q,
            "registration": self.registration,
            "sync": self.sync,
            "rule": self.rule,
            "kme": self.kme,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, str] | None) -> DeviceFilter:
        """The filter `params` kept (older params without a field: any)."""
        p = params or {}
        return cls(
            p.get("q") or "",
            p.get("registration") or "",
            p.get("sync") or "",
            rule_value(p.get("rule")),
            kme_value(p.get("kme")),
        )


def rule_value(raw: str | None) -> str:
    """The `rule` filter as a request carries it, normalised: a rule id as text, or "" (any;
    anything that is no id filters nothing, as the table's form ignores a refused field)."""
    rule_id = parse_id(raw) if raw else None
    return str(rule_id) if rule_id is not None else ""


def kme_value(raw: str | None) -> str:
    """The `kme` filter normalised: a KmeState value, or "" (any)."""
    return raw if raw in KME_FILTERS and raw else ""


@dataclass(frozen=True)
class DeviceSelection:
    """Explicit device ids, or all devices matching `filter`, in the profile `profile_id`.

    `profile_id` None: explicit ids wherever their devices are (the API's `device_ids`); "all
    matching" always names its profile."""

    profile_id: int | None
    ids: tuple[int, ...] = ()
    all_matching: bool = False
    filter: DeviceFilter = field(default_factory=DeviceFilter)

    @classmethod
    def from_values(cls, profile_id: int, values: Values) -> DeviceSelection:
        """The selection a request makes: `all_matching=1` with the filter's fields, else the
        repeated `device_ids` (anything not an id is ignored, repeats once)."""
        if values.get("all_matching") == "1":
            return cls(profile_id, all_matching=True, filter=DeviceFilter.from_values(values))
        return cls(profile_id, ids=_unique_ids(values.getlist("device_ids")))


def _unique_ids(raw: Iterable[str]) -> tuple[int, ...]:
    ids = (parse_id(value) for value in raw)
    return tuple(dict.fromkeys(i for i in ids if i is not None))
