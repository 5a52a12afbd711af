"""Callbacks that run after the session's transaction commits (enqueueing jobs).

Its own module so that services (which record work) and dispatch (which enqueues it) both use it
without importing each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("kmeweb")


def on_commit(session: Session, callback: Callable[[], Any]) -> None:
    """Run `callback` once the session's current transaction commits (dropped on rollback).

    This is how services enqueue jobs: never before the rows the job reads are committed.
    """
    session.info.setdefault("on_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    for callback in session.info.pop("on_commit", []):
        try:
            callback()
        except Exception:  # noqa: BLE001 - Redis down: the sweeper enqueues the work later
            log.warning("enqueue after commit failed; the sweeper will send it", exc_info=True)


@event.listens_for(Session, "after_soft_rollback")
def _drop_on_commit(session: Session, previous_transaction: Any) -> None:
    session.info.pop("on_commit", None)
