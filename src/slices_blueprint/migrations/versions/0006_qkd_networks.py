"""QKD networks: networks, nodes (KMEs), SAEs, links (key pools), keys waiting for slaves.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:36:37.527571
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('qkd_networks',
    sa.Column('experiment_id', sa.String(length=200), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('description', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('ca_cert_pem', sa.Text(), nullable=False),
    sa.Column('ca_key', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_qkd_networks_created_by_users')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_qkd_networks_experiment_id_experiments')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_qkd_networks_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qkd_networks'))
    )
    op.create_index(op.f('ix_qkd_networks_experiment_id'), 'qkd_networks', ['experiment_id'], unique=False)
    op.create_index(op.f('ix_qkd_networks_project_id'), 'qkd_networks', ['project_id'], unique=False)
    op.create_index('ix_qkd_networks_status_expires', 'qkd_networks', ['status', 'expires_at'], unique=False)
    op.create_index('uq_qkd_networks_live_name', 'qkd_networks', ['experiment_id', 'name'], unique=True, postgresql_where=sa.text("status <> 'deleted'"))
    op.create_table('qkd_nodes',
    sa.Column('network_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('kme_id', sa.String(length=64), nullable=False),
    sa.Column('kme_host', sa.String(length=255), nullable=False),
    sa.Column('kme_port', sa.Integer(), nullable=False),
    sa.Column('server_cert_pem', sa.Text(), nullable=False),
    sa.Column('server_key', sa.LargeBinary(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['qkd_networks.id'], name=op.f('fk_qkd_nodes_network_id_qkd_networks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qkd_nodes')),
    sa.UniqueConstraint('kme_host', 'kme_port', name=op.f('uq_qkd_nodes_kme_host')),
    sa.UniqueConstraint('network_id', 'name', name=op.f('uq_qkd_nodes_network_id'))
    )
    op.create_index(op.f('ix_qkd_nodes_network_id'), 'qkd_nodes', ['network_id'], unique=False)
    op.create_table('qkd_links',
    sa.Column('network_id', sa.Uuid(), nullable=False),
    sa.Column('node_a_id', sa.Uuid(), nullable=False),
    sa.Column('node_b_id', sa.Uuid(), nullable=False),
    sa.Column('parameters', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('secret', sa.LargeBinary(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('rate_bps', sa.Float(), nullable=False),
    sa.Column('qber', sa.Float(), nullable=False),
    sa.Column('max_key_count', sa.Integer(), nullable=False),
    sa.Column('key_size', sa.Integer(), nullable=False),
    sa.Column('stored_bits', sa.BigInteger(), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_index', sa.BigInteger(), nullable=False),
    sa.Column('delivered_keys', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['qkd_networks.id'], name=op.f('fk_qkd_links_network_id_qkd_networks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_a_id'], ['qkd_nodes.id'], name=op.f('fk_qkd_links_node_a_id_qkd_nodes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_b_id'], ['qkd_nodes.id'], name=op.f('fk_qkd_links_node_b_id_qkd_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qkd_links')),
    sa.UniqueConstraint('network_id', 'node_a_id', 'node_b_id', name=op.f('uq_qkd_links_network_id'))
    )
    op.create_index(op.f('ix_qkd_links_network_id'), 'qkd_links', ['network_id'], unique=False)
    op.create_table('qkd_saes',
    sa.Column('network_id', sa.Uuid(), nullable=False),
    sa.Column('node_id', sa.Uuid(), nullable=False),
    sa.Column('sae_id', sa.String(length=64), nullable=False),
    sa.Column('cert_pem', sa.Text(), nullable=False),
    sa.Column('key', sa.LargeBinary(), nullable=True),
    sa.Column('downloaded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['qkd_networks.id'], name=op.f('fk_qkd_saes_network_id_qkd_networks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_id'], ['qkd_nodes.id'], name=op.f('fk_qkd_saes_node_id_qkd_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qkd_saes')),
    sa.UniqueConstraint('network_id', 'sae_id', name=op.f('uq_qkd_saes_network_id'))
    )
    op.create_index(op.f('ix_qkd_saes_network_id'), 'qkd_saes', ['network_id'], unique=False)
    op.create_table('qkd_keys',
    sa.Column('key_id', sa.Uuid(), nullable=False),
    sa.Column('network_id', sa.Uuid(), nullable=False),
    sa.Column('master_sae_id', sa.String(length=64), nullable=False),
    sa.Column('link_id', sa.Uuid(), nullable=False),
    sa.Column('key_index', sa.BigInteger(), nullable=False),
    sa.Column('size_bits', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['qkd_links.id'], name=op.f('fk_qkd_keys_link_id_qkd_links'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['network_id'], ['qkd_networks.id'], name=op.f('fk_qkd_keys_network_id_qkd_networks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_qkd_keys'))
    )
    op.create_index(op.f('ix_qkd_keys_network_id'), 'qkd_keys', ['network_id'], unique=False)
    op.create_table('qkd_key_deliveries',
    sa.Column('key_id', sa.Uuid(), nullable=False),
    sa.Column('slave_sae_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['qkd_keys.key_id'], name=op.f('fk_qkd_key_deliveries_key_id_qkd_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', 'slave_sae_id', name=op.f('pk_qkd_key_deliveries'))
    )


def downgrade() -> None:
    op.drop_table('qkd_key_deliveries')
    op.drop_index(op.f('ix_qkd_keys_network_id'), table_name='qkd_keys')
    op.drop_table('qkd_keys')
    op.drop_index(op.f('ix_qkd_saes_network_id'), table_name='qkd_saes')
    op.drop_table('qkd_saes')
    op.drop_index(op.f('ix_qkd_links_network_id'), table_name='qkd_links')
    op.drop_table('qkd_links')
    op.drop_index(op.f('ix_qkd_nodes_network_id'), table_name='qkd_nodes')
    op.drop_table('qkd_nodes')
    op.drop_index('uq_qkd_networks_live_name', table_name='qkd_networks', postgresql_where=sa.text("status <> 'deleted'"))
    op.drop_index('ix_qkd_networks_status_expires', table_name='qkd_networks')
    op.drop_index(op.f('ix_qkd_networks_project_id'), table_name='qkd_networks')
    op.drop_index(op.f('ix_qkd_networks_experiment_id'), table_name='qkd_networks')
    op.drop_table('qkd_networks')
