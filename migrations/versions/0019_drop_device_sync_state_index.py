"""Drop ix_device_sync_state: every device's sync state in a second index, rewritten each time
a device goes pending and comes back synced (twice per device on Approve All Devices), while
what reads by sync state reads the few unsynced devices through ix_device_unsynced

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 20:00:00

"""
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('device') as batch_op:
        batch_op.drop_index('ix_device_sync_state')


def downgrade():
    with op.batch_alter_table('device') as batch_op:
        batch_op.create_index('ix_device_sync_state', ['sync_state'], unique=False)
