"""operation.params: what an operation's job needs to run it (a move of "all N matching")

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 09:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    # The API's move of a filter answers 202 at once; its job reads the selection, the target
    # and the actor from here (the database, not Redis, is the record of what must happen).
    with op.batch_alter_table('operation') as batch_op:
        batch_op.add_column(sa.Column('params', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('operation') as batch_op:
        batch_op.drop_column('params')
