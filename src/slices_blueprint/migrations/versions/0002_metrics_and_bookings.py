"""Per-VM metrics history (samples pushed with host heartbeats); host capacity bookings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vm_metric_samples',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('resource_id', sa.Uuid(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cpu_seconds', sa.Float(), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('net_rx_bytes', sa.BigInteger(), nullable=True),
    sa.Column('net_tx_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_read_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_write_bytes', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['resource_id'], ['compute_resources.id'], name=op.f('fk_vm_metric_samples_resource_id_compute_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vm_metric_samples'))
    )
    op.create_index(op.f('ix_vm_metric_samples_at'), 'vm_metric_samples', ['at'], unique=False)
    op.create_index('ix_vm_metric_samples_resource_at', 'vm_metric_samples', ['resource_id', 'at'], unique=False)
    op.create_table('host_bookings',
    sa.Column('vm_id', sa.String(length=200), nullable=False),
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mib', sa.Integer(), nullable=False),
    sa.Column('booked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_host_bookings_host_id_hosts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vm_id', name=op.f('pk_host_bookings'))
    )
    op.create_index(op.f('ix_host_bookings_host_id'), 'host_bookings', ['host_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_host_bookings_host_id'), table_name='host_bookings')
    op.drop_table('host_bookings')
    op.drop_index('ix_vm_metric_samples_resource_at', table_name='vm_metric_samples')
    op.drop_index(op.f('ix_vm_metric_samples_at'), table_name='vm_metric_samples')
    op.drop_table('vm_metric_samples')
