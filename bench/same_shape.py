"""The transaction of one accepted resource request, written directly in SQL with psycopg:
the 4 SELECTs and 5 writes the service makes (experiment and project, the request_id, the
flavor, the image; the batch task, the resource, its job, its create task, its audit event).

Used by the raw-PostgreSQL baseline and by the minimal FastAPI app of the benchmark.
"""

from __future__ import annotations

import datetime as dt
import uuid

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

EXPERIMENT = ("SELECT e.id, e.project_id, e.expires_at, p.name FROM experiments e "
              "JOIN projects p ON p.id = e.project_id WHERE e.id = %s")
REQUEST = "SELECT id FROM tasks WHERE experiment_id = %s AND request_id = %s"
FLAVOR = "SELECT id, flavor_type, friendly_name, vcpus, ram_mib, hidden FROM flavors WHERE id = %s"
IMAGE = "SELECT id, flavor_type, friendly_name, min_ram_mib, hidden FROM disk_images WHERE id = %s"
TASK = ("INSERT INTO tasks (id, kind, status, completed, parent_id, resource_id, experiment_id, request_id, "
        "request_hash, attempts, job_id, result, created_at, updated_at) "
        "VALUES (%s, %s, 'pending', 0, %s, %s, %s, %s, %s, 0, %s, '{}', now(), now())")
RESOURCE = ("INSERT INTO compute_resources (id, experiment_id, project_id, friendly_name, flavor_id, disk_image_id, "
            "provider, status, request_config, access, provider_data, expires_at, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending', %s, '{}', '{}', %s, now(), now())")
JOB = ("SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'sb:run_operation', 0, %s, NULL, %s, NULL)"
       "::procrastinate_job_to_defer_v1]))")
EVENT = ("INSERT INTO events (at, actor, action, outcome, resource_id, task_id, experiment_id, project_id, detail) "
         "VALUES (now(), %s, 'resource.create', 'requested', %s, %s, %s, %s, %s)")


async def accept(conn: AsyncConnection, experiment_id: str, request_id: uuid.UUID, name: str,
                 flavor_id: uuid.UUID, image_id: uuid.UUID) -> uuid.UUID | None:
    """Record one resource, its batch and create tasks, its job and its event in one
    transaction; answer the batch task's id (None: unknown experiment, flavor or image)."""
    async with conn.transaction():
        experiment = await (await conn.execute(EXPERIMENT, (experiment_id,))).fetchone()
        existing = await (await conn.execute(REQUEST, (experiment_id, request_id))).fetchone()
        if existing:
            return existing[0]
        flavor = await (await conn.execute(FLAVOR, (flavor_id,))).fetchone()
        image = await (await conn.execute(IMAGE, (image_id,))).fetchone()
        if not (experiment and flavor and image):
            return None
        batch, resource, create = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)
        await conn.execute(TASK, (batch, "batch", None, None, experiment_id, request_id, "0" * 64, None))
        await conn.execute(RESOURCE, (resource, experiment_id, experiment[1], name, flavor_id, image_id,
                                      flavor[1], Jsonb({"config": {}}), expires))
        job = await (await conn.execute(JOB, (str(resource), Jsonb({"task_id": str(create)})))).fetchone()
        await conn.execute(TASK, (create, "create", batch, resource, experiment_id, None, None, job[0]))
        await conn.execute(EVENT, ("bench", resource, create, experiment_id, experiment[1],
                                   Jsonb({"name": name, "flavor": flavor[2], "image": image[2]})))
        return batch
