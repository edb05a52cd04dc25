"""Advance reservations: equipment, reservations, the items each holds (no overlaps: an
exclusion constraint), per-project reserved-hours limits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:17:06.194499
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('equipment',
    sa.Column('number', sa.Integer(), sa.Identity(always=True), nullable=False),
    sa.Column('kind', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('site', sa.String(length=200), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_equipment')),
    sa.UniqueConstraint('name', name=op.f('uq_equipment_name')),
    sa.UniqueConstraint('number', name=op.f('uq_equipment_number'))
    )
    op.create_index(op.f('ix_equipment_kind'), 'equipment', ['kind'], unique=False)
    op.create_table('reservation_limits',
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('max_hours', sa.Integer(), nullable=True),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_reservation_limits_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_reservation_limits'))
    )
    op.create_table('reservations',
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('experiment_id', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('ram_mib', sa.Integer(), nullable=False),
    sa.Column('request', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('warned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.String(length=200), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_reservations_window')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_reservations_created_by_users')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_reservations_experiment_id_experiments')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_reservations_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reservations'))
    )
    op.create_index(op.f('ix_reservations_experiment_id'), 'reservations', ['experiment_id'], unique=False)
    op.create_index(op.f('ix_reservations_project_id'), 'reservations', ['project_id'], unique=False)
    op.create_index('ix_reservations_status_ends', 'reservations', ['status', 'ends_at'], unique=False)
    op.create_table('reserved_equipment',
    sa.Column('reservation_id', sa.Uuid(), nullable=False),
    sa.Column('equipment_number', sa.Integer(), nullable=False),
    sa.Column('period', postgresql.TSTZRANGE(), nullable=False),
    # no two reservations hold one item at overlapping times: the item as a one-point
    # int4range, so GiST's built-in range operators suffice (no btree_gist extension)
    postgresql.ExcludeConstraint((sa.text("int4range(equipment_number, equipment_number, '[]')"), '&&'),
                                 (sa.column('period'), '&&'), using='gist', name='reserved_equipment_no_overlap'),
    sa.ForeignKeyConstraint(['equipment_number'], ['equipment.number'], name=op.f('fk_reserved_equipment_equipment_number_equipment')),
    sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'], name=op.f('fk_reserved_equipment_reservation_id_reservations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('reservation_id', 'equipment_number', name=op.f('pk_reserved_equipment'))
    )


def downgrade() -> None:
    op.drop_table('reserved_equipment')
    op.drop_index('ix_reservations_status_ends', table_name='reservations')
    op.drop_index(op.f('ix_reservations_project_id'), table_name='reservations')
    op.drop_index(op.f('ix_reservations_experiment_id'), table_name='reservations')
    op.drop_table('reservations')
    op.drop_table('reservation_limits')
    op.drop_index(op.f('ix_equipment_kind'), table_name='equipment')
    op.drop_table('equipment')
