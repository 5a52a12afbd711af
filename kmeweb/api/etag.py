"""ETags of versioned items (profiles, routing rules): an answer carries the item's version as
its ETag, and a write sent with If-Match is refused with 412 when the item changed since (two
scripts, or a script and an admin in the console, never overwrite each other unseen). Without
If-Match a write applies to the item as it is."""

from __future__ import annotations

from typing import Protocol

from flask import Response, request

from kmeweb.errors import ApiProblem


class Versioned(Protocol):
    """A row whose `version` grows with each change (a profile, a routing rule)."""

    @property
    def id(self) -> int: ...

    @property
    def version(self) -> int: ...


def etag_of(item: Versioned) -> str:
    return f'"{item.id}-{item.version}"'


def with_etag(response: Response, item: Versioned) -> Response:
    response.headers["ETag"] = etag_of(item)
    return response


def expected_version(item: Versioned, what: str = "profile") -> int:
    """The version a write may apply to: the current one, when If-Match is absent, `*` or
    names the current ETag. Raises ApiProblem 412 when it names another (`what`: the item's
    noun in the problem's detail)."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return item.version
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if etag_of(item) not in tags:
        raise ApiProblem(
            412,
            "precondition_failed",
            f"The {what} changed since you read it (If-Match): GET it again, then retry.",
        )
    return item.version
