"""Callbacks that run after the session's transaction commits (enqueueing jobs).

Its own module so that services (which record work) and dispatch (which enqueues it) both use it
without importing each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

log = logging.getLogger("kmeweb")


def on_commit(session: Session | scoped_session, callback: Callable[[], Any]) -> None:
    """Run `callback` once the session's current transaction commits (dropped on rollback).

    This is how services enqueue jobs: never before the rows the job reads are committed.
    """
    if isinstance(session, scoped_session):
        session = session()  # Flask-SQLAlchemy's db.session: the request's own Session
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault("on_commit", []).append((transaction, callback))


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    for _transaction, callback in session.info.pop("on_commit", []):
        try:
            callback()
        except Exception:  # noqa: BLE001 - Redis down: the sweeper enqueues the work later
            log.warning("enqueue after commit failed; the sweeper will send it", exc_info=True)


@event.listens_for(Session, "after_soft_rollback")
def _drop_on_commit(session: Session, previous_transaction: Any) -> None:
    """Drop the callbacks of the transaction that rolled back, and of the savepoints inside it:
    a rolled-back SAVEPOINT keeps the outer transaction's callbacks."""
    pending = session.info.get("on_commit")
    if not pending:
        return
    session.info["on_commit"] = [
        (transaction, callback)
        for transaction, callback in pending
        if not _within(transaction, previous_transaction)
    ]


def _within(transaction: Any, ancestor: Any) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False
