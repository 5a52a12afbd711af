"""Routing rules: ordered rules that approve new devices and place them in a profile; each
reseller's auto-approve and default profile become a rule, and each device keeps the rule
(and its version) that placed it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 16:30:00

"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

CATCH_ALL_NAME = 'Everything else'


def _rule_table():
    return sa.table(
        'routing_rule',
        sa.column('id', sa.Integer),
        sa.column('name', sa.String),
        sa.column('position', sa.Integer),
        sa.column('catch_all', sa.Boolean),
        sa.column('version', sa.Integer),
        sa.column('reseller_ids', sa.JSON),
        sa.column('order_patterns', sa.JSON),
        sa.column('model_patterns', sa.JSON),
        sa.column('identifiers', sa.JSON),
        sa.column('action', sa.String),
        sa.column('profile_id', sa.Integer),
        sa.column('to_default', sa.Boolean),
        sa.column('attributes', sa.JSON),
        sa.column('created_at', sa.DateTime),
        sa.column('updated_at', sa.DateTime),
        sa.column('updated_by', sa.String),
    )


def _rules_from_resellers(conn):
    """One rule per reseller that had a preference (auto-approve, or a default profile that is
    a KME profile), by reseller name, then the catch-all: hold for approval, Default Profile.
    The same devices go to the same places as before."""
    kme = {
        pid
        for pid, kind in conn.execute(sa.text('SELECT id, kind FROM profile'))
        if kind == 'kme'
    }
    resellers = conn.execute(
        sa.text(
            'SELECT id, kme_reseller_id, name, auto_approve, default_profile_id FROM reseller '
            'WHERE auto_approve OR default_profile_id IS NOT NULL ORDER BY lower(name), id'
        )
    ).all()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows, names = [], {CATCH_ALL_NAME.lower()}
    for rid, kme_id, name, auto_approve, profile_id in resellers:
        profile_id = profile_id if profile_id in kme else None
        if not auto_approve and profile_id is None:
            continue  # a default profile that is not a KME profile meant the Default Profile
        label = f'Reseller {name or kme_id}'[:90]
        if label.lower() in names:
            label = f'{label} ({kme_id})'[:100]
        names.add(label.lower())
        rows.append(
            {
                'name': label,
                'position': len(rows) + 1,
                'catch_all': False,
                'reseller_ids': [rid],
                'action': 'approve' if auto_approve else 'hold',
                'profile_id': profile_id,
                'to_default': profile_id is None,
            }
        )
    rows.append(
        {
            'name': CATCH_ALL_NAME,
            'position': len(rows) + 1,
            'catch_all': True,
            'reseller_ids': [],
            'action': 'hold',
            'profile_id': None,
            'to_default': True,
        }
    )
    for row in rows:
        row.update(
            version=1,
            order_patterns=[],
            model_patterns=[],
            identifiers=[],
            attributes={},
            created_at=now,
            updated_at=now,
            updated_by='migration 0015',
        )
    op.bulk_insert(_rule_table(), rows)


def upgrade():
    op.create_table(
        'routing_rule',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('catch_all', sa.Boolean(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('reseller_ids', sa.JSON(), nullable=False),
        sa.Column('order_patterns', sa.JSON(), nullable=False),
        sa.Column('model_patterns', sa.JSON(), nullable=False),
        sa.Column('identifiers', sa.JSON(), nullable=False),
        sa.Column('imei_from', sa.String(length=15), nullable=True),
        sa.Column('imei_to', sa.String(length=15), nullable=True),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('profile_id', sa.Integer(), nullable=True),
        sa.Column('to_default', sa.Boolean(), nullable=False),
        sa.Column('end_user_id', sa.Integer(), nullable=True),
        sa.Column('attributes', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('updated_by', sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(
            ['end_user_id'],
            ['end_user.id'],
            name=op.f('fk_routing_rule_end_user_id_end_user'),
            ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['profile_id'],
            ['profile.id'],
            name=op.f('fk_routing_rule_profile_id_profile'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_rule')),
        sa.UniqueConstraint('name', name=op.f('uq_routing_rule_name')),
    )
    with op.batch_alter_table('device') as batch_op:
        batch_op.add_column(sa.Column('rule_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rule_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rule_note', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('routed_at', sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(
            op.f('fk_device_rule_id_routing_rule'), 'routing_rule', ['rule_id'], ['id'], ondelete='SET NULL'
        )
        batch_op.create_index('ix_device_profile_rule', ['profile_id', 'rule_id'])
    _rules_from_resellers(op.get_bind())
    with op.batch_alter_table('reseller') as batch_op:
        batch_op.drop_column('auto_approve')
        batch_op.drop_column('default_profile_id')


def downgrade():
    """Back to reseller preferences: a rule naming exactly one reseller and nothing else gives
    that reseller its auto-approve and default profile (the first such rule wins); every other
    rule is lost."""
    with op.batch_alter_table('reseller') as batch_op:
        batch_op.add_column(
            sa.Column('auto_approve', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('default_profile_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f('fk_reseller_default_profile_id_profile'),
            'profile',
            ['default_profile_id'],
            ['id'],
            ondelete='SET NULL',
        )
    conn = op.get_bind()
    rules = sa.table(
        'routing_rule',
        sa.column('catch_all', sa.Boolean),
        sa.column('position', sa.Integer),
        sa.column('reseller_ids', sa.JSON),
        sa.column('order_patterns', sa.JSON),
        sa.column('model_patterns', sa.JSON),
        sa.column('identifiers', sa.JSON),
        sa.column('imei_from', sa.String),
        sa.column('action', sa.String),
        sa.column('profile_id', sa.Integer),
    )
    done = set()
    for row in conn.execute(sa.select(rules).order_by(rules.c.position)):
        only_reseller = (
            not row.catch_all
            and len(row.reseller_ids or []) == 1
            and not (row.order_patterns or row.model_patterns or row.identifiers or row.imei_from)
        )
        if not only_reseller or row.reseller_ids[0] in done:
            continue
        done.add(row.reseller_ids[0])
        conn.execute(
            sa.text(
                'UPDATE reseller SET auto_approve = :a, default_profile_id = :p WHERE id = :r'
            ),
            {'a': row.action == 'approve', 'p': row.profile_id, 'r': row.reseller_ids[0]},
        )
    with op.batch_alter_table('device') as batch_op:
        batch_op.drop_index('ix_device_profile_rule')
        batch_op.drop_constraint(op.f('fk_device_rule_id_routing_rule'), type_='foreignkey')
        batch_op.drop_column('routed_at')
        batch_op.drop_column('rule_note')
        batch_op.drop_column('rule_version')
        batch_op.drop_column('rule_id')
    op.drop_table('routing_rule')
