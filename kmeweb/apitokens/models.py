from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow


class Scope(Choice):
    """What a token may do, in Samsung's vocabulary where Samsung has one (`kme.*`)."""

    INTEGRATION_READ = "kme.integration:read", "Read the Knox integration's status"
    INTEGRATION_WRITE = "kme.integration:write", "Test connection and Sync now"
    UPLOADS_READ = "kme.uploads:read", "Read uploads and resellers"
    UPLOADS_WRITE = "kme.uploads:write", "Approve uploads"
    RULES_READ = "rules:read", "Read and preview routing rules"
    RULES_WRITE = "rules:write", "Create, change, reorder, delete and apply routing rules"
    PROFILES_READ = "kme.profiles:read", "Read profiles and their inventory"
    PROFILES_WRITE = "kme.profiles:write", "Create, change and delete profiles and tokens"
    DEVICES_READ = "kme.devices:read", "Search and read devices"
    DEVICES_WRITE = "kme.devices:write", "Move, unassign, delete, import and edit devices"
    OPERATIONS_READ = "operations:read", "Read operations and their progress"
    OPERATIONS_WRITE = "operations:write", "Retry operations"
    USERS_READ = "users:read", "Read the directory of end users"
    USERS_WRITE = "users:write", "Create, change and delete end users"
    AUDIT_READ = "audit:read", "Read and export the audit log"

    @property
    def writes(self) -> bool:
        return self.value.endswith(":write")


#: The scopes a viewer's token may hold.
READ_SCOPES = tuple(s for s in Scope if not s.writes)


class TokenKind(Choice):
    PERSONAL = "personal", "Personal token"
    SERVICE = "service", "Service client"


class ApiToken(db.Model):
    """A bearer token of the JSON API. Only a hash of the secret is kept; `prefix` (its first
    characters) names it in lists. A personal token acts as its owner and stops with the
    owner's account; a service client belongs to no person (`owner_id` is None) and names the
    admin who created it."""

    __tablename__ = "api_token"
    __table_args__ = (Index("ix_api_token_owner_id", "owner_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16), default=TokenKind.PERSONAL)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("admin_user.id", ondelete="SET NULL"))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_service(self) -> bool:
        return self.kind == TokenKind.SERVICE

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "prefix": self.prefix}


class IdempotencyKey(db.Model):
    """The first answer to a POST sent with an `Idempotency-Key` header, per token: a retry
    with the same key and body gets the same answer (the same operation), never a second
    action. `status` is None while the first request is still being answered."""

    __tablename__ = "api_idempotency_key"
    __table_args__ = (
        Index("uq_api_idempotency_key_token_key", "token_id", "key", unique=True),
        Index("ix_api_idempotency_key_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column()
    body: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
