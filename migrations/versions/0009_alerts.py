"""alerts: webhook destinations and one delivery row per (destination, event); change.created_at

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-02 05:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'alert_destination',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('secret_enc', sa.Text(), nullable=True),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('token_days', sa.Integer(), nullable=False),
        sa.Column('upload_hours', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('failing', sa.Boolean(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', sa.DateTime(), nullable=True),
        sa.Column('last_delivered_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_destination')),
        sa.UniqueConstraint('name', name=op.f('uq_alert_destination_name')),
    )
    # The unique (destination_id, event_key) is what sends each event once per destination.
    op.create_table(
        'alert_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('destination_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('event_key', sa.String(length=200), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['destination_id'],
            ['alert_destination.id'],
            name=op.f('fk_alert_delivery_destination_id_alert_destination'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_delivery')),
        sa.UniqueConstraint(
            'destination_id', 'event_key', name=op.f('uq_alert_delivery_destination_id')
        ),
    )
    op.create_index('ix_alert_delivery_created_at', 'alert_delivery', ['created_at'])
    op.create_index('ix_alert_delivery_status', 'alert_delivery', ['status'])
    # The Overview's changes per hour over the last 24 hours.
    op.create_index('ix_change_created_at', 'change', ['created_at'])


def downgrade():
    op.drop_index('ix_change_created_at', table_name='change')
    op.drop_index('ix_alert_delivery_status', table_name='alert_delivery')
    op.drop_index('ix_alert_delivery_created_at', table_name='alert_delivery')
    op.drop_table('alert_delivery')
    op.drop_table('alert_destination')
