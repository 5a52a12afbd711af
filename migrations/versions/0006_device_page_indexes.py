"""device page indexes: a profile's devices by IMEI, and its registered count, from the index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:10:00

"""
from alembic import op


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


def downgrade():
    op.drop_index('ix_device_profile_registered', table_name='device')
    op.drop_index('ix_device_profile_imei', table_name='device')
