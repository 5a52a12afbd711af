"""The history purge: what is older than the retention goes, in batches over several runs;
nothing goes under a legal hold, without a retention, or while something still needs it; and
a page answers while a purge batch is open in another transaction."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kmeweb.audit.models import AuditEvent, HistoryRetention
from kmeweb.audit.retention import PURGE_ACTION, save_retention
from kmeweb.extensions import db
from kmeweb.operations import queue
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.ops.retention import delete_audit_batch, purge_history
from kmeweb.outbox.models import Change, ChangeKind, ChangeStatus
from kmeweb.sync.schedule import PERIODIC, Scheduler
from tests.conftest import TEST_DB
from tests.factories import count_rows

NOW = datetime.now(UTC).replace(microsecond=0)
DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)


def _ticks() -> Callable[[], float]:
    """A clock that moves one second each time the purge looks at it: with a budget of 3 s a
    run does exactly three full batches (one look sets the deadline, one after each full
    batch)."""
    seconds = itertools.count()
    return lambda: float(next(seconds))


def _events(session: Session, ages_days: list[float]) -> dict[float, int]:
    """One audit event per age (days before NOW), inserted in the order given; {age: id}."""
    ids = {}
    for age in ages_days:
        event = AuditEvent(at=NOW - timedelta(days=age), actor="sync", action="device.move")
        session.add(event)
        session.flush()
        ids[age] = event.id
    session.commit()
    return ids


def _purge_events(session: Session) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == PURGE_ACTION).order_by(AuditEvent.id)
        )
    )


def _left(session: Session, model: type) -> set[int]:
    session.expire_all()
    return set(session.scalars(select(model.id)))


def test_the_purge_deletes_exactly_what_is_older_than_the_cutoff_in_batches_over_runs(session):
    save_retention(session, {"days": str(DAYS)}, "test")
    session.commit()
    # Old and new events interleaved by id: the walk is by primary key, the test by `at`.
    ages = [DAYS + 0.01 + n for n in range(23)] + [DAYS - 0.01, 29, 10, 1, 0]
    random.Random(24).shuffle(ages)
    ids = _events(session, ages)
    retention_event = session.scalar(
        select(AuditEvent.id).where(AuditEvent.action == "history.retention")
    )
    kept = {ids[a] for a in ages if a < DAYS} | {retention_event}

    runs = []
    for _ in range(2):
        report = purge_history(session, "test", batch_size=5, budget_s=3, now=NOW, clock=_ticks())
        runs.append((report.audit_events, report.batches, report.complete))
    # 23 old events, 5 per batch, three batches per run: 15, then the last 8.
    assert runs == [(15, 3, False), (8, 2, True)]
    purges = _purge_events(session)
    assert _left(session, AuditEvent) == kept | {p.id for p in purges}
    assert [p.details["audit_events"] for p in purges] == [15, 8]
    assert [p.details["complete"] for p in purges] == [False, True]
    assert {p.details["cutoff"] for p in purges} == {CUTOFF.isoformat(timespec="seconds")}
    assert {p.actor for p in purges} == {"test"}
    # A run that finds nothing to delete writes nothing.
    assert purge_history(session, "test", now=NOW).deleted == 0
    assert len(_purge_events(session)) == 2


def _operation(session: Session, status: str, age: float, finished_age: float | None = None):
    created = NOW - timedelta(days=age)
    finished = None if finished_age is None else NOW - timedelta(days=finished_age)
    operation = Operation(
        kind=ChangeKind.DEVICE_MOVE, label="Move", status=status, created_at=created,
        finished_at=finished,
    )  # fmt: skip
    session.add(operation)
    session.flush()
    return operation


def _change(session: Session, status: str, age: float, operation=None, done_age=None) -> int:
    change = Change(
        kind=ChangeKind.DEVICE_MOVE, payload={"device_ids": [1]}, status=status,
        created_at=NOW - timedelta(days=age),
        done_at=None if done_age is None else NOW - timedelta(days=done_age),
        operation_id=operation.id if operation else None,
    )  # fmt: skip
    session.add(change)
    session.flush()
    return change.id


def test_finished_sync_records_go_and_anything_still_needed_stays(session):
    save_retention(session, {"days": str(DAYS)}, "test")
    done, failed = ChangeStatus.DONE, ChangeStatus.FAILED
    pending, running = ChangeStatus.PENDING, ChangeStatus.RUNNING
    old, new = DAYS + 10, 1
    # An operation done long ago, with its changes: all of it goes.
    gone_op = _operation(session, OperationStatus.DONE, old, old)
    gone = {_change(session, done, old, gone_op, old), _change(session, failed, old, gone_op, old)}
    # A running operation keeps every change, finished ones included.
    running_op = _operation(session, OperationStatus.RUNNING, old)
    kept = {
        _change(session, done, old, running_op, old),
        _change(session, pending, old, running_op),
    }
    # A failed operation one of whose changes is pending again (a retry) keeps them all.
    retried_op = _operation(session, OperationStatus.FAILED, old, old)
    kept |= {
        _change(session, failed, old, retried_op, old),
        _change(session, pending, old, retried_op),
    }
    # An old operation whose last change finished yesterday stays with its changes.
    late_op = _operation(session, OperationStatus.DONE, old, old)
    kept |= {_change(session, done, old, late_op, old), _change(session, done, old, late_op, new)}
    # A recent operation, and one created long ago but finished recently.
    recent_op = _operation(session, OperationStatus.DONE, new, new)
    kept.add(_change(session, done, new, recent_op, new))
    slow_op = _operation(session, OperationStatus.FAILED, old, new)
    # Changes of no operation: finished and old go; unfinished or recent stay.
    gone |= {_change(session, done, old, done_age=old), _change(session, failed, old, done_age=old)}
    kept |= {
        _change(session, pending, old),
        _change(session, running, old),
        _change(session, done, new, done_age=new),
        _change(session, done, old, done_age=new),  # retried for weeks, done yesterday
    }
    session.commit()

    report = purge_history(session, "test", batch_size=2, now=NOW)
    assert (report.changes, report.operations) == (len(gone), 1) == (4, 1)
    assert _left(session, Change) == kept
    assert _left(session, Operation) == {
        running_op.id, retried_op.id, late_op.id, recent_op.id, slow_op.id
    }  # fmt: skip


def test_an_operation_with_many_changes_goes_whole_in_one_transaction(session):
    """A batch holds about `batch_size` rows, but never splits an operation from its changes."""
    save_retention(session, {"days": str(DAYS)}, "test")
    big = _operation(session, OperationStatus.DONE, DAYS + 5, DAYS + 5)
    for _ in range(7):
        _change(session, ChangeStatus.DONE, DAYS + 5, big, DAYS + 5)
    small = _operation(session, OperationStatus.DONE, DAYS + 5, DAYS + 5)
    _change(session, ChangeStatus.DONE, DAYS + 5, small, DAYS + 5)
    session.commit()
    report = purge_history(session, "test", batch_size=3, now=NOW)
    assert (report.operations, report.changes, report.batches) == (2, 8, 2)
    assert _left(session, Operation) == set() and _left(session, Change) == set()


def test_no_retention_keeps_everything(session):
    _events(session, [DAYS * 100, DAYS * 10])
    old_op = _operation(session, OperationStatus.DONE, 1000, 1000)
    _change(session, ChangeStatus.DONE, 1000, old_op, 1000)
    session.commit()
    report = purge_history(session, "test", now=NOW)
    assert report.cutoff is None and report.deleted == 0
    assert count_rows(session, AuditEvent) == 2
    assert count_rows(session, Operation) == count_rows(session, Change) == 1


def test_a_legal_hold_stops_the_purge_even_mid_run(session):
    save_retention(session, {"days": str(DAYS), "legal_hold": "y"}, "test")
    session.commit()
    _events(session, [DAYS + n for n in range(1, 13)])
    report = purge_history(session, "test", batch_size=2, now=NOW)
    assert report.cutoff is None and report.held and report.deleted == 0
    assert count_rows(session, AuditEvent) == 13  # the 12 and the retention's own event

    save_retention(session, {"days": str(DAYS), "legal_hold": ""}, "test")
    session.commit()
    looks = itertools.count()

    def clock() -> float:
        # An admin switches the hold on (another connection) during the second batch.
        if next(looks) == 2:
            with db.engine.begin() as conn:
                conn.execute(update(HistoryRetention).values(legal_hold=True))
        return 0.0

    report = purge_history(session, "test", batch_size=2, budget_s=60, now=NOW, clock=clock)
    assert (report.audit_events, report.held, report.complete) == (4, True, False)
    assert count_rows(session, AuditEvent, AuditEvent.at < CUTOFF) == 8
    assert _purge_events(session)[-1].details["audit_events"] == 4


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """On PostgreSQL, a page statement that waits over 5 s for a lock fails instead of
    hanging: a purge that locked what pages read fails the test below."""
    if TEST_DB == "postgresql":
        app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": "-c statement_timeout=5000 -c lock_timeout=5000"}
        }
    return app_config


def test_pages_answer_while_a_purge_batch_is_open_in_another_transaction(
    app, session, client, login, actions
):
    login("admin")
    save_retention(session, {"days": str(DAYS)}, "test")
    _events(session, [DAYS + 1 + n for n in range(30)])
    session.commit()
    session.remove()

    with db.engine.connect() as conn:
        purging = Session(bind=conn)
        batch = delete_audit_batch(purging, CUTOFF, None, 20)
        assert batch.audit_events == 20  # deleted, not committed: the batch holds its locks
        try:
            page = client.get("/audit/?per_page=100")
            assert page.status_code == 200
            # The page reads the last committed state: all 30 old events are still there.
            assert page.get_data(as_text=True).count("device.move</code>") == 30
            if TEST_DB == "postgresql":
                # A page that writes is not held up either: saving the settings audits into
                # the very table the batch deletes from (SQLite has one writer at a time:
                # there the purge's batches are short and it pauses between them).
                saved = actions.post("/audit/retention", {"days": "60"})
                assert saved.status_code == 303
        finally:
            purging.rollback()
            purging.close()
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.move") == 30


def test_the_scheduler_runs_the_purge_while_a_retention_is_set(app, session, redis_url, work):
    only_purge = tuple(p for p in PERIODIC if p.name == "purge")
    scheduler = Scheduler(app, redis.Redis.from_url(redis_url), periodic=only_purge)
    app.config["PURGE_INTERVAL_S"] = 600
    assert scheduler.tick(now=1000.0) == []  # no retention: nothing to schedule
    _events(session, [400, 300, 1])
    save_retention(session, {"days": "90"}, "admin@example.com")
    session.commit()
    assert scheduler.tick(now=1001.0) == ["purge"]
    assert queue.job_status("periodic-purge") == "queued"
    assert queue.job_options(queue.PURGE_JOB, app.config)["job_timeout"] >= 30 + 180
    work()
    purges = _purge_events(session)
    assert [(p.actor, p.details["audit_events"]) for p in purges] == [("scheduler", 2)]
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.move") == 1
    assert scheduler.tick(now=1500.0) == []  # every PURGE_INTERVAL_S
    assert scheduler.tick(now=1601.0) == ["purge"]
    save_retention(session, {"days": "90", "legal_hold": "y"}, "admin@example.com")
    session.commit()
    assert scheduler.tick(now=2300.0) == []  # a legal hold: not scheduled at all


def test_flask_purge_history_says_what_it_deleted(runner, session):
    result = runner.invoke(args=["purge-history"])
    assert result.exit_code == 0, result.output
    assert "nothing purged: no retention is set" in result.output
    save_retention(session, {"days": "30"}, "test")
    session.commit()
    _events(session, [1000 + n for n in range(7)])
    result = runner.invoke(args=["purge-history", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert "deleted 7 audit events, 0 changes and 0 operations older than" in result.output
    assert [p.actor for p in _purge_events(session)] == ["cli"]
