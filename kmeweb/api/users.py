"""Users: the directory of end users that profiles and devices are associated with (Admin ›
Users). End users have no password here; nothing of a password is ever answered."""

from __future__ import annotations

from flask import url_for
from pydantic import BaseModel, Field

from kmeweb.api.paging import PageQuery, keyset
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Out
from kmeweb.apitokens.models import Scope
from kmeweb.directory import services
from kmeweb.directory.models import EndUser
from kmeweb.extensions import db

TAG = "users"


class UserOut(Out):
    id: int
    username: str
    email: str | None
    display_name: str | None
    profiles: int = Field(description="Profiles associated with the user")
    devices: int = Field(description="Devices associated with the user")

    @classmethod
    def of(cls, user: EndUser, usage: tuple[int, int] | None = None) -> UserOut:
        profiles, devices = usage or services.usage_counts(db.session, [user.id])[user.id]
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            display_name=user.display_name,
            profiles=profiles,
            devices=devices,
        )


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class UserQuery(PageQuery):
    q: str | None = Field(
        None, max_length=254, description="Username, email or display name contains"
    )


class UserIn(BaseModel):
    username: str = Field(max_length=254, description="Unique, compared without case; no spaces")
    email: str | None = Field(None, max_length=254)
    display_name: str | None = Field(None, max_length=200)


class UserPatch(BaseModel):
    """The fields to change; the others keep their value. A new username reaches KME for the
    user's profiles and devices."""

    username: str | None = Field(None, max_length=254)
    email: str | None = Field(None, max_length=254, description="null clears it")
    display_name: str | None = Field(None, max_length=200, description="null clears it")


@api.get("/users", scope=Scope.USERS_READ, tag=TAG, query=UserQuery, answers={200: UserPage})
def list_users(query: UserQuery) -> UserPage:
    """End users, by id, with how many profiles and devices each is associated with."""
    rows, cursor = keyset(db.session, services.users_query(query.q), EndUser.id, query)
    usage = services.usage_counts(db.session, [u.id for u in rows])
    return UserPage(items=[UserOut.of(u, usage[u.id]) for u in rows], next_cursor=cursor)


@api.get("/users/<int:user_id>", scope=Scope.USERS_READ, tag=TAG, answers={200: UserOut, 404: None})
def get_user(user_id: int) -> UserOut:
    """One end user."""
    return UserOut.of(services.get_user_or_404(db.session, user_id))


@api.post("/users", scope=Scope.USERS_WRITE, tag=TAG, body=UserIn, answers={201: UserOut})
def create_user(json: UserIn):
    """Add an end user; a username already taken (whatever its case) is a 422."""
    user = services.create_user(db.session, json.model_dump(), caller())
    db.session.commit()
    return UserOut.of(user), 201, {"Location": url_for("api.get_user", user_id=user.id)}


@api.patch(
    "/users/<int:user_id>",
    scope=Scope.USERS_WRITE,
    tag=TAG,
    body=UserPatch,
    answers={200: UserOut, 404: None},
)
def update_user(user_id: int, json: UserPatch) -> UserOut:
    """Change an end user."""
    changes = json.model_dump(exclude_unset=True)
    user = services.patch_user(db.session, user_id, changes, caller())
    db.session.commit()
    return UserOut.of(user)


@api.delete(
    "/users/<int:user_id>",
    scope=Scope.USERS_WRITE,
    tag=TAG,
    answers={204: None, 404: None, 409: None},
)
def delete_user(user_id: int):
    """Delete an end user; 409 while a profile or device is associated with it (the answer
    says which)."""
    services.delete_user(db.session, user_id, caller())
    db.session.commit()
    return "", 204
