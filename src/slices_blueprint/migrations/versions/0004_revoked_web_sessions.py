"""Web sessions revoked at logout (a copied cookie no longer works after it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('revoked_web_sessions',
        sa.Column('sid_hash', sa.LargeBinary(), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sid_hash', name=op.f('pk_revoked_web_sessions')),
    )
    op.create_index(op.f('ix_revoked_web_sessions_until'), 'revoked_web_sessions', ['until'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_revoked_web_sessions_until'), table_name='revoked_web_sessions')
    op.drop_table('revoked_web_sessions')
