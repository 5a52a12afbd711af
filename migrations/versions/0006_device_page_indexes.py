"""device page indexes: a profile's devices by IMEI, its registered count, unsynced devices

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    # The profile page's first page (WHERE profile_id = ? ORDER BY imei LIMIT 50) reads the
    # index in order instead of sorting 100,000 rows; the Bulk Enrollment list counts
    # registered devices per profile without touching the table.
    op.create_index('ix_device_profile_imei', 'device', ['profile_id', 'imei'])
    op.create_index('ix_device_profile_registered', 'device', ['profile_id', 'registered_at'])
    # Both lead with profile_id: the single-column index is one more to update on every move.
    op.drop_index('ix_device_profile_id', table_name='device')
    # Sync status counts the devices KME has not confirmed yet: a partial index holds only them.
    op.create_index(
        'ix_device_unsynced',
        'device',
        ['profile_id', 'sync_state'],
        sqlite_where=sa.text("sync_state != 'synced'"),
        postgresql_where=sa.text("sync_state <> 'synced'"),
    )


def downgrade():
    op.create_index('ix_device_profile_id', 'device', ['profile_id'])
    op.drop_index('ix_device_unsynced', table_name='device')
    op.drop_index('ix_device_profile_registered', table_name='device')
    op.drop_index('ix_device_profile_imei', table_name='device')
