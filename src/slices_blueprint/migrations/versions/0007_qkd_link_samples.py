"""QKD link samples: each live link's key rate, QBER, pool and state every few seconds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 18:55:33.301641
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('qkd_link_samples',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('link_id', sa.Uuid(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stored_keys', sa.BigInteger(), nullable=False),
    sa.Column('rate_bps', sa.Float(), nullable=False),
    sa.Column('qber', sa.Float(), nullable=False),
    sa.Column('delivered_keys', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['qkd_links.id'], name=op.f('fk_qkd_link_samples_link_id_qkd_links'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qkd_link_samples'))
    )
    op.create_index(op.f('ix_qkd_link_samples_at'), 'qkd_link_samples', ['at'], unique=False)
    op.create_index('ix_qkd_link_samples_link_at', 'qkd_link_samples', ['link_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_qkd_link_samples_link_at', table_name='qkd_link_samples')
    op.drop_index(op.f('ix_qkd_link_samples_at'), table_name='qkd_link_samples')
    op.drop_table('qkd_link_samples')
