"""Console accounts: how each signs in (password or the identity provider), its link to the
provider's subject, break-glass, and a one-time set-password link

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 13:30:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admin_user') as batch_op:
        batch_op.add_column(
            sa.Column('sign_in', sa.String(16), nullable=False, server_default='password')
        )
        batch_op.add_column(sa.Column('oidc_issuer', sa.String(255), nullable=True))
        batch_op.add_column(sa.Column('oidc_subject', sa.String(255), nullable=True))
        batch_op.add_column(
            sa.Column('break_glass', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('password_link_hash', sa.String(64), nullable=True))
        batch_op.add_column(sa.Column('password_link_expires_at', sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint(
            'uq_admin_user_oidc_identity', ['oidc_issuer', 'oidc_subject']
        )
        batch_op.create_index('ix_admin_user_password_link_hash', ['password_link_hash'])


def downgrade():
    with op.batch_alter_table('admin_user') as batch_op:
        batch_op.drop_index('ix_admin_user_password_link_hash')
        batch_op.drop_constraint('uq_admin_user_oidc_identity', type_='unique')
        for column in (
            'password_link_expires_at',
            'password_link_hash',
            'break_glass',
            'oidc_subject',
            'oidc_issuer',
            'sign_in',
        ):
            batch_op.drop_column(column)
