"""installation: one row naming this database (the scheduler keys its Redis state by it)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 07:50:00

"""
import uuid
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table(
        'installation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('installation_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.bulk_insert(table, [{'id': 1, 'installation_id': uuid.uuid4().hex, 'created_at': now}])


def downgrade():
    op.drop_table('installation')
