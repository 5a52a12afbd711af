"""Device page and history: each device's history (device_event), each push attempt
(change_attempt), what KME last held for each device, changes made in the Samsung portal,
devices a full pull no longer finds, the last refused enrollment, and the portal policy

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 19:20:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'device_event',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('actor', sa.String(length=254), nullable=True),
        sa.Column('change_id', sa.Integer(), nullable=True),
        sa.Column('operation_id', sa.Integer(), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_device_event')),
    )
    op.create_index('ix_device_event_device', 'device_event', ['device_id', 'id'])
    op.create_table(
        'change_attempt',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('change_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ['change_id'], ['change.id'],
            name=op.f('fk_change_attempt_change_id_change'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_change_attempt')),
    )
    op.create_index('ix_change_attempt_change', 'change_attempt', ['change_id', 'id'])
    op.create_index('ix_audit_event_target', 'audit_event', ['target_type', 'target_id', 'id'])
    with op.batch_alter_table('device') as batch:
        batch.add_column(sa.Column('kme_seen_approval', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('kme_seen_profile_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('kme_seen_user', sa.String(length=254), nullable=True))
        batch.add_column(sa.Column('kme_seen_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('portal_changed_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('portal_previous', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('kme_missing_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('last_refusal_code', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('last_refusal_at', sa.DateTime(), nullable=True))
    op.create_index(
        'ix_device_portal_changed', 'device', ['profile_id'],
        sqlite_where=sa.text('portal_changed_at IS NOT NULL'),
        postgresql_where=sa.text('portal_changed_at IS NOT NULL'),
    )
    op.create_index(
        'ix_device_kme_missing', 'device', ['profile_id'],
        sqlite_where=sa.text('kme_missing_at IS NOT NULL'),
        postgresql_where=sa.text('kme_missing_at IS NOT NULL'),
    )
    with op.batch_alter_table('integration') as batch:
        batch.add_column(
            sa.Column('portal_policy', sa.String(length=16), nullable=False, server_default='adopt')
        )


def downgrade():
    with op.batch_alter_table('integration') as batch:
        batch.drop_column('portal_policy')
    op.drop_index('ix_device_kme_missing', table_name='device')
    op.drop_index('ix_device_portal_changed', table_name='device')
    with op.batch_alter_table('device') as batch:
        for name in (
            'last_refusal_at', 'last_refusal_code', 'kme_missing_at', 'portal_previous',
            'portal_changed_at', 'kme_seen_at', 'kme_seen_user', 'kme_seen_profile_id',
            'kme_seen_approval',
        ):
            batch.drop_column(name)
    op.drop_index('ix_audit_event_target', table_name='audit_event')
    op.drop_index('ix_change_attempt_change', table_name='change_attempt')
    op.drop_table('change_attempt')
    op.drop_index('ix_device_event_device', table_name='device_event')
    op.drop_table('device_event')
