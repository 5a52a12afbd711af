"""device indexes of the API's device list: a profile's devices by id, a user's devices

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 09:00:00

"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    # GET /devices?profile_id= pages by keyset on id (WHERE profile_id = ? AND id > ? ORDER BY
    # id LIMIT n): an index range, so page 500 costs what page 1 does. The profile page's
    # (profile_id, imei) index is ordered by IMEI and cannot serve it.
    op.create_index('ix_device_profile_keyset', 'device', ['profile_id', 'id'])
    # GET /devices?user= (and ON DELETE SET NULL of an end user) without reading every device.
    op.create_index('ix_device_end_user_id', 'device', ['end_user_id'])


def downgrade():
    op.drop_index('ix_device_end_user_id', table_name='device')
    op.drop_index('ix_device_profile_keyset', table_name='device')
