"""The simulator's own reading of kme-api.md section 3: Knox error codes and the error body.

Written from the document, not imported from the client, so that a misread code cannot hide in
both. Codes have uneven lengths (7 or 8 digits) and are compared as integers.
"""

from __future__ import annotations

import uuid
from typing import Any

RESOURCE_INVALID_PARAM = 4000000
TOO_MANY_DEVICES = 4000019
TENANT_MISMATCH = 4000904
BULK_ENROLL_PROFILE_INVALID = 4001700
CUSTOMER_ID_INVALID = 4001701
BULK_ENROLL_DEVICE_INVALID = 4001703
API_KEY_NON_UNIQUE_JWTID = 4002250  # community client table: jti reused
BAD_REQUEST_CLIENTIDENTIFIER_CLAIM_NOT_POPULATED = 4002251
AUTHORIZATION_FAIL = 4010000
ACCESS_TOKEN_BAD_REQUEST = 4012250  # the documented 401 example
BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED = 4012251
ACCESS_TOKEN_EXPIRED = 4032251  # community client table
RESOURCE_NOT_FOUND = 4040000
DEVICE_NOT_FOUND = 4040300
TENANT_NOT_FOUND = 4040900
BULK_ENROLL_PROFILE_NOT_FOUND = 4041700
RESELLER_NOT_FOUND = 4042100
BULK_ENROLL_PROFILE_NAME_CONFLICT = 4091700
RESELLER_ASSOCIATION_ALREADY_EXISTS = 4092103
INTERNAL_SERVER_ERROR = 5000000
RSA_DECRYPTION_FAIL = 5000006


def error_body(code: int, message: str, data: Any = None) -> dict[str, Any]:
    """The documented Knox error body `{"errorId", "code", "message", "data"}`."""
    return {"errorId": uuid.uuid4().hex, "code": code, "message": message, "data": data}


class SimError(Exception):
    """A Knox error answer: HTTP status plus the Knox error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        data: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.data = data if data is not None else message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.data)


def bad_param(data: str) -> SimError:
    """400 RESOURCE_INVALID_PARAM with `data` saying what is wrong."""
    return SimError(400, RESOURCE_INVALID_PARAM, "RESOURCE_INVALID_PARAM", data)
