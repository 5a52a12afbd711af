"""History retention: how many days the audit log and the finished sync records are kept, and
the legal hold that stops the purge

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 10:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    # No row is written: without one, everything is kept (the default), as before this
    # migration. The purge's WHERE clauses use indexes that exist already:
    # ix_audit_event_at, ix_change_created_at, ix_operation_created_at and
    # ix_change_operation_id.
    op.create_table(
        'history_retention',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('days', sa.Integer(), nullable=True),
        sa.Column('legal_hold', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.Column('updated_by', sa.String(length=254), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_history_retention')),
    )


def downgrade():
    op.drop_table('history_retention')
