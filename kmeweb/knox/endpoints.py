"""The client's table of Knox endpoints (method and path).

Paths marked [Unverified] in kme-api.md could not be confirmed against Samsung's spec; override any
entry through `KnoxConfig.paths` ({"name": "/path"} or {"name": "METHOD /path"}) instead of editing
callers. Path parameters use `{name}` placeholders.
"""

from __future__ import annotations

from typing import NamedTuple


class Endpoint(NamedTuple):
    method: str
    path: str


ENDPOINTS: dict[str, Endpoint] = {
    # Authentication (the OAuth token URL is KnoxConfig.token_url, on Samsung's global host)
    "legacy_access_token": Endpoint("POST", "/ams/v1/users/accesstoken"),
    # Devices
    "devices_list": Endpoint("GET", "/kcs/v1/kme/devices/list"),
    "devices_assign": Endpoint("PUT", "/kcs/v1/kme/devices/assignProfile"),
    "devices_unassign_v1": Endpoint("PUT", "/kcs/v1/kme/devices/unassignProfile"),
    # The release notes say POST, the scopes page PUT; the simulator accepts both.
    "devices_unassign_v2": Endpoint("POST", "/kcs/v2/kme/devices/unassignProfile"),
    "devices_delete": Endpoint("POST", "/kcs/v1/kme/devices/delete"),
    "uploads_list": Endpoint("GET", "/kcs/v1/kme/devices/uploads/list"),
    "uploads_approve": Endpoint("POST", "/kcs/v1/kme/devices/uploads/approvals"),
    # Profiles
    "profiles_list": Endpoint("GET", "/kcs/v1/kme/profiles/list"),
    "profiles_get": Endpoint("GET", "/kcs/v1/kme/profiles/{profile_id}/get"),
    "profiles_create": Endpoint("POST", "/kcs/v1/kme/profiles/create"),
    "profiles_create_async": Endpoint("POST", "/kcs/v1/kme/profiles/createAsync"),
    "profiles_status": Endpoint("GET", "/kcs/v1/kme/profiles/status"),
    "profiles_update": Endpoint("PUT", "/kcs/v1/kme/profiles/{profile_id}"),
    "profiles_delete": Endpoint("DELETE", "/kcs/v1/kme/profiles/{profile_id}"),
    # Resellers
    "reseller_approvals": Endpoint("POST", "/kcs/v1/kme/reseller/approvals"),
    # Not in Samsung's endpoint list [Unverified]: served by the simulator; without it, derive
    # resellers from uploads.
    "reseller_list": Endpoint("GET", "/kcs/v1/kme/reseller/list"),
    "profile_alias_create": Endpoint("POST", "/kcs/v1/kme/reseller/profilealias"),
    "profile_alias_update": Endpoint("PUT", "/kcs/v1/kme/reseller/profilealias/{alias_id}"),
    "profile_alias_delete": Endpoint("DELETE", "/kcs/v1/kme/reseller/profilealias/{alias_id}"),
}


def resolve_endpoints(overrides: dict[str, str] | None = None) -> dict[str, Endpoint]:
    """The endpoint table with `overrides` applied ("/path" or "METHOD /path" per name).

    Raises KeyError for an unknown endpoint name, so a typo in configuration is not ignored.
    """
    table = dict(ENDPOINTS)
    for name, spec in (overrides or {}).items():
        if name not in table:
            raise KeyError(f"unknown Knox endpoint name: {name}")
        spec = spec.strip()
        if " " in spec:
            method, path = spec.split(None, 1)
            table[name] = Endpoint(method.upper(), path.strip())
        else:
            table[name] = Endpoint(table[name].method, spec)
    return table
