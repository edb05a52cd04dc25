"""Per-project quota overrides; an index for the audit trail's per-resource rate bound.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('project_quotas',
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('limits', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_quotas_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_project_quotas'))
    )
    op.create_index('ix_events_resource_at', 'events', ['resource_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_events_resource_at', table_name='events')
    op.drop_table('project_quotas')
