"""The Operations page: list with filters, self-polling status, Retry for failed ones."""

from __future__ import annotations

from kmeweb.operations import services
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change


def _operation(session, status: str, label: str = "Move 10 devices to Sales", **over):
    op = services.create_operation(session, "device.move", label, over.pop("total", 10), "test")
    op.status = status
    for key, value in over.items():
        setattr(op, key, value)
    session.commit()
    return op


def test_lists_operations_newest_first_with_filters(client, login, session):
    login("viewer")
    _operation(session, "done", "Old finished one")
    _operation(session, "failed", "Broken one", error="KME refused it (4001700)")
    _operation(session, "running", "Busy one", done=4)
    body = client.get("/operations/").get_data(as_text=True)
    assert body.index("Busy one") < body.index("Broken one") < body.index("Old finished one")
    assert "4 of 10" in body
    failed = client.get("/operations/?status=failed").get_data(as_text=True)
    assert "Broken one" in failed and "Busy one" not in failed and "KME refused it" in failed
    running = client.get("/operations/?status=active").get_data(as_text=True)
    assert "Busy one" in running and "Broken one" not in running
    # a viewer sees failures but gets no Retry button
    assert "Retry</button>" not in failed


def test_status_partial_polls_while_running_and_stops_when_done(client, login, htmx, session):
    login("admin")
    op = _operation(session, "running", done=3)
    partial = htmx.get(f"/operations/{op.id}").get_data(as_text=True)
    assert 'hx-trigger="load delay:1s"' in partial and "<html" not in partial
    assert "3 of 10" in partial
    op.status, op.done = "done", 10
    session.commit()
    partial = htmx.get(f"/operations/{op.id}").get_data(as_text=True)
    assert "hx-trigger" not in partial and "10 of 10" in partial


def test_detail_page_lists_the_changes(client, login, session):
    login("admin")
    op = _operation(session, "failed", error="1 of 1 changes failed: KME refused it")
    session.add(
        Change(
            kind="device.move",
            payload={"device_ids": [1]},
            device_count=1,
            status="failed",
            attempts=1,
            last_error="KME refused it",
            operation_id=op.id,
        )
    )
    session.commit()
    body = client.get(f"/operations/{op.id}").get_data(as_text=True)
    assert "<html" in body and "device.move" in body and "KME refused it" in body
    assert "Retry" in body


def test_retry_requeues_a_failed_operation(client, login, actions, session):
    login("admin")
    op = _operation(session, "failed", error="boom")
    change = Change(
        kind="device.move",
        payload={"device_ids": []},
        status="failed",
        attempts=3,
        last_error="boom",
        operation_id=op.id,
    )
    session.add(change)
    session.commit()
    response = actions.post(f"/operations/{op.id}/retry")
    assert response.status_code == 303
    session.expire_all()
    assert session.get(Operation, op.id).status == "queued"
    assert (change.status, change.attempts, change.last_error) == ("pending", 0, None)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "was queued again" in page


def test_retry_of_a_finished_operation_is_a_conflict(client, login, actions, session):
    login("admin")
    op = _operation(session, "done")
    response = actions.post(f"/operations/{op.id}/retry")
    assert response.status_code == 409
    assert "Only a failed operation can be retried." in response.get_data(as_text=True)


def test_viewer_cannot_retry(client, login, actions, session):
    login("viewer")
    op = _operation(session, "failed", error="boom")
    assert actions.post(f"/operations/{op.id}/retry").status_code == 403
    session.expire_all()
    assert session.get(Operation, op.id).status == "failed"


def test_unknown_operation_is_404(client, login):
    login("admin")
    assert client.get("/operations/999").status_code == 404


def test_htmx_conflict_shows_the_message_in_the_flash_area(client, login, actions, session):
    login("admin")
    op = _operation(session, "done")
    token = actions.token("/operations/")
    response = client.post(
        f"/operations/{op.id}/retry", headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert response.headers["HX-Reswap"] == "none"
    assert 'id="flash-area"' in body and 'hx-swap-oob="true"' in body
    assert "Only a failed operation can be retried." in body and "<html" not in body
