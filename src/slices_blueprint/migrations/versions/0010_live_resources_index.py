"""An experiment's live resources in id order (its resource listing, page by page): a partial
index on ``(experiment_id, id)`` of the resources not deleted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_compute_resources_live_by_experiment', 'compute_resources', ['experiment_id', 'id'],
                    unique=False, postgresql_where=sa.text("status <> 'deleted'"))


def downgrade() -> None:
    op.drop_index('ix_compute_resources_live_by_experiment', table_name='compute_resources',
                  postgresql_where=sa.text("status <> 'deleted'"))
