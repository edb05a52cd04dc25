"""Resources and QKD networks may name the reservation they run inside (created at its
start, deleted at its end): a nullable, indexed ``reservation_id`` on each.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

TABLES = ('compute_resources', 'qkd_networks')


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column('reservation_id', sa.Uuid(), nullable=True))
        op.create_index(op.f(f'ix_{table}_reservation_id'), table, ['reservation_id'], unique=False)
        op.create_foreign_key(op.f(f'fk_{table}_reservation_id_reservations'), table, 'reservations',
                              ['reservation_id'], ['id'])


def downgrade() -> None:
    for table in TABLES:
        op.drop_constraint(op.f(f'fk_{table}_reservation_id_reservations'), table, type_='foreignkey')
        op.drop_index(op.f(f'ix_{table}_reservation_id'), table_name=table)
        op.drop_column(table, 'reservation_id')
