"""Errors raised by the Knox client, and the Knox error codes it compares against.

Exception text never carries tokens, secrets, keys or passwords: the client builds messages from
the HTTP status, the endpoint path (no query string) and the Knox error body only, and scrubs any
configured secret out of them before raising.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kmeweb.knox.types import BatchResult

# Knox error codes (kme-api.md section 3). Compare as integers: lengths differ (7 or 8 digits).
RESOURCE_INVALID_PARAM = 4000000
TOO_MANY_DEVICES = 4000019
TENANT_MISMATCH = 4000904
BULK_ENROLL_PROFILE_INVALID = 4001700
CUSTOMER_ID_INVALID = 4001701  # also BULK_ENROLL_REQUEST_INVALID (one number, two names)
BULK_ENROLL_DEVICE_INVALID = 4001703
API_KEY_NON_UNIQUE_JWTID = 4002250
BAD_REQUEST_CLIENTIDENTIFIER_CLAIM_NOT_POPULATED = 4002251
AUTHORIZATION_FAIL = 4010000
ACCESS_TOKEN_BAD_REQUEST = 4012250
BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED = 4012251
AUTHORIZATION_FAIL_403 = 40300000
ACCESS_TOKEN_EXPIRED = 4032251
ACCESS_TOKEN_INVALID = 4032252
RESOURCE_NOT_FOUND = 4040000
DEVICE_NOT_FOUND = 4040300
PROFILE_NOT_FOUND = 4040400
TENANT_NOT_FOUND = 4040900
BULK_ENROLL_PROFILE_NOT_FOUND = 4041700
RESELLER_NOT_FOUND = 4042100
BULK_ENROLL_PROFILE_NAME_CONFLICT = 4091700
RESELLER_ASSOCIATION_ALREADY_EXISTS = 4092103
INTERNAL_SERVER_ERROR = 5000000
RSA_DECRYPTION_FAIL = 5000006

#: Codes that mean "your access token is no good": the client renews the token once and retries.
TOKEN_REJECTED_CODES = frozenset({ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_INVALID})
#: Codes a batch device operation can fail with because of one bad id in the batch; the client
#: splits the batch to find which ids (for all-or-nothing endpoints such as v1 unassign).
DEVICE_LEVEL_CODES = frozenset({DEVICE_NOT_FOUND, BULK_ENROLL_DEVICE_INVALID, RSA_DECRYPTION_FAIL})


class KnoxError(Exception):
    """Base of every error the Knox client raises.

    Attributes: `status` (HTTP status or None), `code` (Knox code, int or None), `knox_message`
    (the Knox enum name such as "TOO_MANY_DEVICES"), `data` (Knox detail text), `error_id`,
    `method` and `path` of the failed call, and `partial_result` (a BatchResult with what a
    batched device operation achieved before it failed, else None).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        knox_message: str | None = None,
        data: Any = None,
        error_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.knox_message = knox_message
        self.data = data
        self.error_id = error_id
        self.method = method
        self.path = path
        self.partial_result: BatchResult | None = None


class KnoxConfigError(KnoxError, ValueError):
    """The client configuration is unusable (missing credentials, unreadable key...)."""


class KnoxTransientError(KnoxError):
    """A failure worth retrying later: timeout, connection error, 429, 502, 503 or 504.

    The client has already retried it with backoff; `attempts` says how often, `retry_after`
    (seconds) is the server's Retry-After when it sent one.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, attempts: int = 0, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.attempts = attempts


class KnoxRejectedError(KnoxError):
    """Knox refused the request (other 4xx, or a non-transient 5xx such as 500). Never retried."""


class KnoxAuthError(KnoxRejectedError):
    """Authentication failed: bad credentials, key or token, or the token could not be renewed."""

    @classmethod
    def from_rejected(
        cls, exc: KnoxError, message: str, method: str | None, path: str | None
    ) -> KnoxAuthError:
        """The authentication failure behind a rejection, keeping its Knox fields."""
        return cls(
            message,
            status=exc.status,
            code=exc.code,
            knox_message=exc.knox_message,
            data=exc.data,
            error_id=exc.error_id,
            method=method,
            path=path,
        )
