"""profile secrets: the Wi-Fi password leaves profile.config for an encrypted column

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:20:00

"""
import json

from alembic import op
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import current_app


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

profile = sa.table(
    'profile',
    sa.column('id', sa.Integer),
    sa.column('config', sa.JSON),
    sa.column('secrets_enc', sa.Text),
)


def _fernet() -> Fernet:
    # Run through `flask db upgrade`, which provides the app and its KMEWEB_ENCRYPTION_KEY.
    return Fernet(current_app.config['KMEWEB_ENCRYPTION_KEY'].encode())


def upgrade():
    with op.batch_alter_table('profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secrets_enc', sa.Text(), nullable=True))
    conn = op.get_bind()
    fernet = None
    for row in conn.execute(sa.select(profile.c.id, profile.c.config)).all():
        config = row.config if isinstance(row.config, dict) else json.loads(row.config or '{}')
        extras = config.get('system_extras') or {}
        if 'wifi_password' not in extras:
            continue
        fernet = fernet or _fernet()
        password = extras.pop('wifi_password')
        secrets = json.dumps({'wifi_password': password}).encode()
        conn.execute(
            profile.update()
            .where(profile.c.id == row.id)
            .values(config=config, secrets_enc=fernet.encrypt(secrets).decode())
        )


def downgrade():
    conn = op.get_bind()
    fernet = None
    rows = conn.execute(
        sa.select(profile.c.id, profile.c.config, profile.c.secrets_enc).where(
            profile.c.secrets_enc.is_not(None)
        )
    ).all()
    for row in rows:
        fernet = fernet or _fernet()
        secrets = json.loads(fernet.decrypt(row.secrets_enc.encode()))
        config = row.config if isinstance(row.config, dict) else json.loads(row.config or '{}')
        if secrets.get('wifi_password'):
            config.setdefault('system_extras', {})['wifi_password'] = secrets['wifi_password']
        conn.execute(profile.update().where(profile.c.id == row.id).values(config=config))
    if conn.dialect.name == 'sqlite':
        # SQLite (3.35+) drops the column in place; a batch copy of the table would have to
        # drop `profile`, which device rows reference.
        op.execute('ALTER TABLE profile DROP COLUMN secrets_enc')
    else:
        op.drop_column('profile', 'secrets_enc')
