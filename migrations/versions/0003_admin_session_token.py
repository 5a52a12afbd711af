"""admin session token: logout, a password change or deactivation ends every session

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:50:00

"""
import secrets

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_token', sa.String(length=64), nullable=False, server_default='')
        )
    admin_user = sa.table('admin_user', sa.column('id', sa.Integer), sa.column('session_token', sa.String))
    conn = op.get_bind()
    for (user_id,) in conn.execute(sa.select(admin_user.c.id)).all():
        conn.execute(
            admin_user.update()
            .where(admin_user.c.id == user_id)
            .values(session_token=secrets.token_urlsafe(32))
        )


def downgrade():
    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.drop_column('session_token')
