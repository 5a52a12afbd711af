"""Re-encrypt every stored secret with the current KMEWEB_ENCRYPTION_KEY.

Table-driven: `ENCRYPTED_COLUMNS` lists each (model, column) that holds a Fernet token; a new
secret column is one line here. Each column is walked by primary key in batches, one
transaction per batch, so an interrupted run is resumed by running it again (a value the
current key already decrypts is counted as already current and left alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.fernet import Fernet
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kmeweb import crypto
from kmeweb.alerts.models import AlertDestination
from kmeweb.devices.models import Device
from kmeweb.integration.models import Integration
from kmeweb.profiles.models import Profile


def encrypted_columns() -> list[tuple[type, str]]:
    """Every (model, column) holding a Fernet token."""
    return [
        (Integration, "secret_enc"),  # Knox OAuth client secret or legacy keys.json
        (Profile, "secrets_enc"),  # profile-level secrets (KME configuration passwords)
        (Device, "enrollment_password_enc"),  # per-device enrollment passwords
        (AlertDestination, "secret_enc"),  # alert webhook shared secrets
        # Any later secret column: add (Model, "column") here.
    ]


@dataclass
class ColumnReport:
    table: str
    column: str
    rotated: int = 0
    already_current: int = 0


@dataclass
class RotationReport:
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(c.rotated for c in self.columns)

    @property
    def already_current(self) -> int:
        return sum(c.already_current for c in self.columns)


def rotate_all(
    session: Session,
    batch_size: int = 500,
    progress: Callable[[str], None] | None = None,
) -> RotationReport:
    """Re-encrypt every registered secret column; raises ValueError (after committing what was
    done) when a value decrypts with no configured key."""
    cfg = current_app.config
    fernet = crypto._fernet()  # noqa: SLF001 - current key first, then the old ones
    current = Fernet(cfg["KMEWEB_ENCRYPTION_KEY"].encode())
    report = RotationReport()
    for model, column_name in encrypted_columns():
        column = getattr(model, column_name)
        pk = model.__mapper__.primary_key[0]
        col_report = ColumnReport(model.__tablename__, column_name)
        report.columns.append(col_report)
        last_id = 0
        while True:
            rows = session.execute(
                select(pk, column)
                .where(pk > last_id, column.is_not(None))
                .order_by(pk)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            for row_id, token in rows:
                if crypto.current_key_decrypts(token, current):
                    col_report.already_current += 1
                    continue
                try:
                    new = crypto.rotate(token, fernet)
                except ValueError:
                    session.commit()
                    raise ValueError(
                        f"{model.__tablename__}.{column_name} id {row_id} cannot be decrypted "
                        "with KMEWEB_ENCRYPTION_KEY or KMEWEB_ENCRYPTION_KEYS_OLD"
                    ) from None
                # Only if unchanged since read: a concurrent save wrote a current token anyway.
                values = {column_name: new}
                if "updated_at" in model.__table__.c:  # a re-encryption is not an edit
                    values["updated_at"] = model.__table__.c.updated_at
                session.execute(
                    update(model)
                    .where(pk == row_id, column == token)
                    .values(values)
                    .execution_options(synchronize_session=False)
                )
                col_report.rotated += 1
            session.commit()
            last_id = rows[-1][0]
            if progress is not None:
                progress(
                    f"{col_report.table}.{column_name}: {col_report.rotated} re-encrypted, "
                    f"{col_report.already_current} already current"
                )
    return report
