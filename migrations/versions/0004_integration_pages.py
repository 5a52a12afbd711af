"""integration pages: activated_at, and an index counting pending devices per upload

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('integration', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activated_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.create_index('ix_device_approval_upload_id', ['approval', 'upload_id'], unique=False)


def downgrade():
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_index('ix_device_approval_upload_id')
    with op.batch_alter_table('integration', schema=None) as batch_op:
        batch_op.drop_column('activated_at')
