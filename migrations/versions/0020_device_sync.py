"""device_sync: a device's sync bookkeeping (sync_state, sync_error, kme_seen_*) moves out of the
wide device row into a narrow table of its own, a row only for the devices that have any (no
row: synced, never seen in KME). Every change KME must hear about writes the sync state twice
(pending, then synced); on PostgreSQL each write of a device row was a new version of the whole
row with an entry in each of its indexes

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 14:30:00

"""

import sqlalchemy as sa
from alembic import op


revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_COLUMNS = (
    "sync_state",
    "sync_error",
    "kme_seen_approval",
    "kme_seen_profile_id",
    "kme_seen_user",
    "kme_seen_at",
)


def upgrade():
    op.create_table(
        "device_sync",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("sync_state", sa.String(length=16), nullable=False, server_default="synced"),
        sa.Column("sync_error", sa.Text(), nullable=True),
        sa.Column("kme_seen_approval", sa.String(length=16), nullable=True),
        sa.Column("kme_seen_profile_id", sa.Integer(), nullable=True),
        sa.Column("kme_seen_user", sa.String(length=254), nullable=True),
        sa.Column("kme_seen_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.execute(
        f"INSERT INTO device_sync (device_id, {', '.join(_COLUMNS)})"
        f" SELECT id, {', '.join(_COLUMNS)} FROM device"
        " WHERE sync_state <> 'synced' OR sync_error IS NOT NULL OR kme_seen_at IS NOT NULL"
        " OR kme_seen_approval IS NOT NULL OR kme_seen_profile_id IS NOT NULL"
        " OR kme_seen_user IS NOT NULL"
    )
    op.create_index(
        "ix_device_sync_unsynced",
        "device_sync",
        ["sync_state", "device_id"],
        unique=False,
        sqlite_where=sa.text("sync_state != 'synced'"),
        postgresql_where=sa.text("sync_state <> 'synced'"),
    )
    op.drop_index("ix_device_unsynced", table_name="device")
    with op.batch_alter_table("device") as batch_op:
        for column in _COLUMNS:
            batch_op.drop_column(column)


def downgrade():
    with op.batch_alter_table("device") as batch_op:
        batch_op.add_column(
            sa.Column("sync_state", sa.String(length=16), nullable=False, server_default="synced")
        )
        batch_op.add_column(sa.Column("sync_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("kme_seen_approval", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("kme_seen_profile_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("kme_seen_user", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("kme_seen_at", sa.DateTime(), nullable=True))
    for column in _COLUMNS:
        op.execute(
            f"UPDATE device SET {column} = (SELECT s.{column} FROM device_sync s"
            " WHERE s.device_id = device.id)"
            " WHERE id IN (SELECT device_id FROM device_sync)"
        )
    op.create_index(
        "ix_device_unsynced",
        "device",
        ["profile_id", "sync_state"],
        unique=False,
        sqlite_where=sa.text("sync_state != 'synced'"),
        postgresql_where=sa.text("sync_state <> 'synced'"),
    )
    op.drop_table("device_sync")
