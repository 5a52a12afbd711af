"""The API as a property-based tester sees it: schemathesis reads the OpenAPI document from a
live server (the app on a loopback port, in a thread) and sends every operation requests made
from the document, against a small tenant. No answer may be a 5xx, and every answer must be
one the document lists for the operation, with a body that matches the documented schema.

Each operation gets a bounded, repeatable number of examples (a fixed seed, derandomized), so
the run takes the same path every time and grows linearly with the routes: the coverage
phase (boundary values of each parameter and field) and then EXAMPLES_PER_OPERATION cases
drawn from the schemas. Requests are what the document allows ("positive"): a request the
document refuses is turned away by the same model validation on every route (a 422 problem,
tests/api). A case may run on whatever an earlier case left (a deleted profile, a moved
device): a 404, 409 or 422 problem is a fine answer, a 5xx never is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from kmeweb.api import paging
from kmeweb.ids import MAX_DB_INT
from kmeweb.operations import services as operations
from kmeweb.operations.models import OperationKind
from kmeweb.outbox.models import ChangeKind
from kmeweb.rules import services as rules
from tests.factories import (
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
    make_upload,
)

EXAMPLES_PER_OPERATION = 10
SEED = 21
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture
def app_config(app_config: dict) -> dict:
    # Every operation's examples come from one token: the run must not meet the rate limit.
    return {**app_config, "API_RATE_LIMIT": "100000 per minute"}


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 names each operation's subtest through the test item's `_nodeid`,
    which pytest 9.2 no longer has (its node ids are structured): give it the plain one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture
def tenant(session) -> None:
    """A little of everything the routes read: the Default Profile and a KME profile with
    devices, a device waiting in the default one, an end user, an upload waiting for
    approval, a routing rule for its reseller, a failed and a finished operation."""
    make_default_profile(session)
    kme = make_profile(session, waiting_devices=2)
    make_device(session, kme, attributes={"asset": "A-1"})
    make_device(session)
    make_end_user(session)
    upload = make_upload(session, pending=2)
    rule = {"name": "Reseller 1", "reseller_ids": [upload.reseller_id], "profile_id": kme.id}
    rules.create_rule(session, rule, "test")
    failed = operations.create_operation(session, ChangeKind.DEVICE_MOVE, "Move 2", total=2)
    operations.finish(session, failed.id, error="KME refused 2 devices")
    done = operations.create_operation(session, OperationKind.PULL, "Sync from KME", total=1)
    operations.finish(session, done.id)
    session.commit()


@pytest.fixture
def api_schema(live_server: str, tenant, make_token) -> schemathesis.BaseSchema:
    """The document as the live server answers it to an admin's token with every scope."""
    headers = {"Authorization": f"Bearer {make_token()}"}
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "positive",
                "max-examples": EXAMPLES_PER_OPERATION,
                "deterministic": True,
            },
            "phases": {"coverage": {"unexpected-methods": []}},
        }
    )
    schema = schemathesis.openapi.from_url(
        f"{live_server}/api/v1/openapi.json", headers=headers, config=config
    )
    schema.config.update(base_url=live_server, headers=headers)
    return schema


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """One keep-alive connection for every case (a connection per request costs more than
    the request)."""
    with requests.Session() as session:
        session.trust_env = False  # no proxy for the loopback server
        yield session


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, http: requests.Session
) -> None:
    cursor_names_an_id(case)
    case.call_and_validate(session=http, checks=CHECKS)


def cursor_names_an_id(case: schemathesis.Case) -> None:
    """A drawn string is almost never a cursor this API gave out, and the coverage phase
    sends one with every list request: each would stop at invalid_cursor, a 422 before the
    query runs. The cursor names an id instead, drawn from the string (repeatably): 0 to one
    past the largest id, so the pages start anywhere and, now and then, past the range."""
    cursor = (case.query or {}).get("cursor")
    if isinstance(cursor, str):
        digest = hashlib.sha256(cursor.encode()).digest()
        case.query["cursor"] = paging.encode(int.from_bytes(digest[:4]) % (MAX_DB_INT + 2))
