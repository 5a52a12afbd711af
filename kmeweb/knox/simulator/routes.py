"""The simulator's route table, written from kme-api.md sections 1 and 2 (not the client's).

Each entry: name -> (methods, path with `<param>` placeholders). `create_simulator(paths=...)`
overrides entries as {"name": "/path"} or {"name": "METHOD[,METHOD] /path"}, for trying a
corrected path without touching the client's table (KMEWEB_KNOX_PATHS is the client's).
"""

from __future__ import annotations

from collections.abc import Mapping

ROUTES: dict[str, tuple[tuple[str, ...], str]] = {
    # 1b OAuth and 1a legacy authentication
    "oauth_token": (("POST",), "/ams/v1/oauth2/token"),
    "legacy_access_token": (("POST",), "/ams/v1/users/accesstoken"),
    # 2.1 devices
    "devices_list": (("GET",), "/kcs/v1/kme/devices/list"),
    "devices_assign": (("PUT",), "/kcs/v1/kme/devices/assignProfile"),
    "devices_unassign_v1": (("PUT",), "/kcs/v1/kme/devices/unassignProfile"),
    # Release notes say POST, the scopes page PUT: accept both.
    "devices_unassign_v2": (("POST", "PUT"), "/kcs/v2/kme/devices/unassignProfile"),
    "devices_delete": (("POST",), "/kcs/v1/kme/devices/delete"),
    "uploads_list": (("GET",), "/kcs/v1/kme/devices/uploads/list"),
    "uploads_approve": (("POST",), "/kcs/v1/kme/devices/uploads/approvals"),
    # 2.2 profiles
    "profiles_list": (("GET",), "/kcs/v1/kme/profiles/list"),
    "profiles_get": (("GET",), "/kcs/v1/kme/profiles/<profile_id>/get"),
    "profiles_create": (("POST",), "/kcs/v1/kme/profiles/create"),
    "profiles_create_async": (("POST",), "/kcs/v1/kme/profiles/createAsync"),
    "profiles_status": (("GET",), "/kcs/v1/kme/profiles/status"),
    "profiles_update": (("PUT",), "/kcs/v1/kme/profiles/<profile_id>"),
    "profiles_delete": (("DELETE",), "/kcs/v1/kme/profiles/<profile_id>"),
    # 2.3 resellers; the list is in no Samsung list (served for convenience)
    "reseller_approvals": (("POST",), "/kcs/v1/kme/reseller/approvals"),
    "reseller_list": (("GET",), "/kcs/v1/kme/reseller/list"),
    "profile_alias_create": (("POST",), "/kcs/v1/kme/reseller/profilealias"),
    "profile_alias_update": (("PUT",), "/kcs/v1/kme/reseller/profilealias/<alias_id>"),
    "profile_alias_delete": (("DELETE",), "/kcs/v1/kme/reseller/profilealias/<alias_id>"),
}


def routes(overrides: Mapping[str, str] | None = None) -> dict[str, tuple[tuple[str, ...], str]]:
    """ROUTES with `overrides` applied; raises KeyError for an unknown name."""
    table = dict(ROUTES)
    for name, spec in (overrides or {}).items():
        if name not in table:
            raise KeyError(f"unknown simulator route: {name}")
        spec = spec.strip()
        if " " in spec:
            methods, path = spec.split(None, 1)
            table[name] = (tuple(m.upper() for m in methods.split(",")), path.strip())
        else:
            table[name] = (table[name][0], spec)
    return table
