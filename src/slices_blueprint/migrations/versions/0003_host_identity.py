"""Host identity: one-time enrolment tokens, the agents' pinned TLS certificates, bookings
kept (confirmed) as the record of where a VM was placed.

Hosts registered before this revision have no certificate: the service does not call them
until their (upgraded) agent registers again with its own token, over HTTPS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('host_enrolments',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('replace', sa.Boolean(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_host_enrolments')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_host_enrolments_token_sha256'))
    )
    op.create_index(op.f('ix_host_enrolments_name'), 'host_enrolments', ['name'], unique=False)
    op.add_column('hosts', sa.Column('cert_pem', sa.Text(), nullable=True))
    op.add_column('hosts', sa.Column('cert_sha256', sa.String(length=64), nullable=True))
    op.add_column('host_bookings', sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('host_bookings', 'confirmed_at')
    op.drop_column('hosts', 'cert_sha256')
    op.drop_column('hosts', 'cert_pem')
    op.drop_index(op.f('ix_host_enrolments_name'), table_name='host_enrolments')
    op.drop_table('host_enrolments')
