"""ETags of profiles: an answer carries the profile's version as its ETag, and a write sent
with If-Match is refused with 412 when the profile changed since (two scripts, or a script
and an admin in the console, never overwrite each other unseen). Without If-Match a write
applies to the profile as it is."""

from __future__ import annotations

from flask import Response, request

from kmeweb.errors import ApiProblem
from kmeweb.profiles.models import Profile


def etag_of(profile: Profile) -> str:
    return f'"{profile.id}-{profile.version}"'


def with_etag(response: Response, profile: Profile) -> Response:
    response.headers["ETag"] = etag_of(profile)
    return response


def expected_version(profile: Profile) -> int:
    """The version a write may apply to: the current one, when If-Match is absent, `*` or
    names the current ETag. Raises ApiProblem 412 when it names another."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return profile.version
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if etag_of(profile) not in tags:
        raise ApiProblem(
            412,
            "precondition_failed",
            "The profile changed since you read it (If-Match): GET it again, then retry.",
        )
    return profile.version
