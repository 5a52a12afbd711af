"""The installation: one row that names this database.

State kept outside the database belongs to the database it was made for: the scheduler keys its
lock and last-run times in Redis by this id (kmeweb.sync.schedule). A fresh database (a new
install, or `make run` after deleting its SQLite file) has a new id and so a fresh schedule,
even behind a Redis an earlier database used; the same database keeps its schedule across
restarts. The migration that adds the table writes the row; `installation_id` writes it when a
database lost it (tests empty every table).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Integer, String, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.extensions import UTCDateTime, db, utcnow

ROW_ID = 1  # the only row


class Installation(db.Model):
    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


def new_installation_id() -> str:
    return uuid.uuid4().hex


def installation_id(engine: Engine) -> str:
    """This database's installation id, written on first use.

    Runs on connections of its own (never the caller's transaction); two processes that start
    together both get the id the first one wrote.
    """
    table = Installation.__table__
    query = select(table.c.installation_id).where(table.c.id == ROW_ID)
    with engine.connect() as conn:
        found = conn.scalar(query)
    if found:
        return found
    made = new_installation_id()
    try:
        with engine.begin() as conn:
            conn.execute(insert(table).values(id=ROW_ID, installation_id=made, created_at=utcnow()))
    except IntegrityError:
        with engine.connect() as conn:
            return conn.scalar(query)
    return made
