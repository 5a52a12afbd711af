"""Kept per-profile counts: each profile row holds how many devices it has and how many of
them are registered, maintained by the services that change devices; filled here by a
recount

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 22:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('profile') as batch_op:
        batch_op.add_column(
            sa.Column('device_count', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('registered_count', sa.Integer(), nullable=False, server_default='0')
        )
    op.execute(
        "UPDATE profile SET"
        " device_count = (SELECT count(*) FROM device WHERE device.profile_id = profile.id),"
        " registered_count = (SELECT count(device.registered_at) FROM device"
        " WHERE device.profile_id = profile.id)"
    )


def downgrade():
    with op.batch_alter_table('profile') as batch_op:
        batch_op.drop_column('registered_count')
        batch_op.drop_column('device_count')
