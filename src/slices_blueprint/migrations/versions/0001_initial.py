"""Initial schema: every table, Procrastinate's queue schema, and an append-only audit trail.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 22:18:25.889410
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


APPEND_ONLY = """
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the events table is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
"""


def upgrade() -> None:
    # Procrastinate's own schema (jobs, workers, periodic defers), at the pinned version.
    op.execute(SchemaManager.get_schema())
    op.create_table('disk_images',
    sa.Column('friendly_name', sa.String(length=200), nullable=False),
    sa.Column('flavor_type', sa.String(length=32), nullable=False),
    sa.Column('cluster_id', sa.String(length=200), nullable=False),
    sa.Column('location', sa.String(length=1000), nullable=False),
    sa.Column('default_username', sa.String(length=100), nullable=True),
    sa.Column('min_disk_mb', sa.Integer(), nullable=False),
    sa.Column('min_ram_mib', sa.Integer(), nullable=False),
    sa.Column('short_description', sa.Text(), nullable=False),
    sa.Column('long_description', sa.Text(), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=100)), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('hidden_by_admin', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disk_images')),
    sa.UniqueConstraint('flavor_type', 'cluster_id', 'location', name=op.f('uq_disk_images_flavor_type'))
    )
    op.create_index(op.f('ix_disk_images_flavor_type'), 'disk_images', ['flavor_type'], unique=False)
    op.create_table('events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('resource_id', sa.Uuid(), nullable=True),
    sa.Column('task_id', sa.Uuid(), nullable=True),
    sa.Column('experiment_id', sa.String(length=200), nullable=True),
    sa.Column('project_id', sa.String(length=200), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    op.create_index(op.f('ix_events_at'), 'events', ['at'], unique=False)
    op.create_index(op.f('ix_events_experiment_id'), 'events', ['experiment_id'], unique=False)
    op.create_index(op.f('ix_events_resource_id'), 'events', ['resource_id'], unique=False)
    op.create_table('flavors',
    sa.Column('friendly_name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('flavor_type', sa.String(length=32), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('ram_mib', sa.Integer(), nullable=False),
    sa.Column('disk_mb', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.String(length=200), nullable=False),
    sa.Column('provider_ref', sa.String(length=200), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('hidden_by_admin', sa.Boolean(), nullable=False),
    sa.Column('extra', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flavors')),
    sa.UniqueConstraint('flavor_type', 'cluster_id', 'provider_ref', name=op.f('uq_flavors_flavor_type'))
    )
    op.create_index(op.f('ix_flavors_flavor_type'), 'flavors', ['flavor_type'], unique=False)
    op.create_table('hosts',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('token_ciphertext', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mib', sa.Integer(), nullable=False),
    sa.Column('disk_free_mib', sa.Integer(), nullable=False),
    sa.Column('vms_running', sa.Integer(), nullable=False),
    sa.Column('vcpus_used', sa.Integer(), nullable=False),
    sa.Column('memory_used_mib', sa.Integer(), nullable=False),
    sa.Column('vmm', sa.String(length=32), nullable=False),
    sa.Column('network_mode', sa.String(length=16), nullable=False),
    sa.Column('last_heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('labels', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hosts')),
    sa.UniqueConstraint('name', name=op.f('uq_hosts_name'))
    )
    op.create_table('projects',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects'))
    )
    op.create_table('users',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('preferred_username', sa.String(length=200), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('affiliation', sa.String(length=300), nullable=True),
    sa.Column('organization', sa.String(length=300), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('public_ssh_key', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users'))
    )
    op.create_table('credentials',
    sa.Column('owner_id', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('selected', sa.String(length=200), nullable=True),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('last_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_check_ok', sa.Boolean(), nullable=True),
    sa.Column('last_check_error', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_credentials_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credentials'))
    )
    op.create_index(op.f('ix_credentials_owner_id'), 'credentials', ['owner_id'], unique=False)
    op.create_index('uq_credentials_owner_kind', 'credentials', ['owner_id', 'kind'], unique=True, postgresql_where=sa.text('owner_id IS NOT NULL'))
    op.create_table('experiments',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_experiments_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiments'))
    )
    op.create_index(op.f('ix_experiments_project_id'), 'experiments', ['project_id'], unique=False)
    op.create_table('compute_resources',
    sa.Column('experiment_id', sa.String(length=200), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('friendly_name', sa.String(length=63), nullable=False),
    sa.Column('flavor_id', sa.Uuid(), nullable=False),
    sa.Column('disk_image_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('provider_resource_id', sa.String(length=300), nullable=True),
    sa.Column('request_config', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('access', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('provider_data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_compute_resources_created_by_users')),
    sa.ForeignKeyConstraint(['disk_image_id'], ['disk_images.id'], name=op.f('fk_compute_resources_disk_image_id_disk_images')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_compute_resources_experiment_id_experiments')),
    sa.ForeignKeyConstraint(['flavor_id'], ['flavors.id'], name=op.f('fk_compute_resources_flavor_id_flavors')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_compute_resources_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compute_resources'))
    )
    op.create_index(op.f('ix_compute_resources_experiment_id'), 'compute_resources', ['experiment_id'], unique=False)
    op.create_index(op.f('ix_compute_resources_project_id'), 'compute_resources', ['project_id'], unique=False)
    op.create_index(op.f('ix_compute_resources_provider_resource_id'), 'compute_resources', ['provider_resource_id'], unique=False)
    op.create_index('ix_compute_resources_status_expires', 'compute_resources', ['status', 'expires_at'], unique=False)
    op.create_index('uq_compute_resources_live_name', 'compute_resources', ['experiment_id', 'friendly_name'], unique=True, postgresql_where=sa.text("status <> 'deleted'"))
    op.create_table('tasks',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('resource_id', sa.Uuid(), nullable=True),
    sa.Column('experiment_id', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('request_id', sa.Uuid(), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_tasks_created_by_users')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_tasks_experiment_id_experiments')),
    sa.ForeignKeyConstraint(['parent_id'], ['tasks.id'], name=op.f('fk_tasks_parent_id_tasks')),
    sa.ForeignKeyConstraint(['resource_id'], ['compute_resources.id'], name=op.f('fk_tasks_resource_id_compute_resources')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    sa.UniqueConstraint('experiment_id', 'request_id', name=op.f('uq_tasks_experiment_id'))
    )
    op.create_index(op.f('ix_tasks_experiment_id'), 'tasks', ['experiment_id'], unique=False)
    op.create_index(op.f('ix_tasks_parent_id'), 'tasks', ['parent_id'], unique=False)
    op.create_index(op.f('ix_tasks_resource_id'), 'tasks', ['resource_id'], unique=False)
    op.execute(APPEND_ONLY)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
    op.execute("DROP FUNCTION IF EXISTS events_append_only()")
    op.drop_index(op.f('ix_tasks_resource_id'), table_name='tasks')
    op.drop_index(op.f('ix_tasks_parent_id'), table_name='tasks')
    op.drop_index(op.f('ix_tasks_experiment_id'), table_name='tasks')
    op.drop_table('tasks')
    op.drop_index('uq_compute_resources_live_name', table_name='compute_resources', postgresql_where=sa.text("status <> 'deleted'"))
    op.drop_index('ix_compute_resources_status_expires', table_name='compute_resources')
    op.drop_index(op.f('ix_compute_resources_provider_resource_id'), table_name='compute_resources')
    op.drop_index(op.f('ix_compute_resources_project_id'), table_name='compute_resources')
    op.drop_index(op.f('ix_compute_resources_experiment_id'), table_name='compute_resources')
    op.drop_table('compute_resources')
    op.drop_index(op.f('ix_experiments_project_id'), table_name='experiments')
    op.drop_table('experiments')
    op.drop_index('uq_credentials_owner_kind', table_name='credentials', postgresql_where=sa.text('owner_id IS NOT NULL'))
    op.drop_index(op.f('ix_credentials_owner_id'), table_name='credentials')
    op.drop_table('credentials')
    op.drop_table('users')
    op.drop_table('projects')
    op.drop_table('hosts')
    op.drop_index(op.f('ix_flavors_flavor_type'), table_name='flavors')
    op.drop_table('flavors')
    op.drop_index(op.f('ix_events_resource_id'), table_name='events')
    op.drop_index(op.f('ix_events_experiment_id'), table_name='events')
    op.drop_index(op.f('ix_events_at'), table_name='events')
    op.drop_table('events')
    op.drop_index(op.f('ix_disk_images_flavor_type'), table_name='disk_images')
    op.drop_table('disk_images')
    for table in ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs", "procrastinate_workers"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
