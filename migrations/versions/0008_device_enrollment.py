"""device enrollment: the agent version a device registered with

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02 05:05:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    # registered_at (the first registration) exists since 0001; the agent version the device
    # last enrolled with is new. Nullable: devices that never enrolled have none.
    with op.batch_alter_table('device') as batch:
        batch.add_column(sa.Column('agent_version', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('device') as batch:
        batch.drop_column('agent_version')
