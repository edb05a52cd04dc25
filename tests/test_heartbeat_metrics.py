"""A host's heartbeat reaches telemetry (wired by ``slices_blueprint.domains``, since
``hosts/`` does not import ``telemetry/``): real HTTP, a real PostgreSQL, the test double
standing in for a microVM placed on a host registered by hand."""

from __future__ import annotations

import uuid

import psycopg

from slices_blueprint.agent.protocol import vm_ref
from slices_blueprint.core.deps import API_PREFIX
from slices_blueprint.core.ids import parse_id
from tests.helpers import Api, some_certificate


def samples_of(database_url: str, resource_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM vm_metric_samples WHERE resource_id = %s",
                           (resource_id,)).fetchone()
    return row[0] if row else 0


def test_a_heartbeat_keeps_a_sample_of_the_vms_placed_on_its_host(live, http, database_url,
                                                                  tmp_path) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "exp-heartbeat")
    task = api.wait_task(token, api.create(token, ["charted"], flavor, image)["id"])
    [rid] = task["resource_ids"]
    admin = {"Authorization": f"Bearer {api.token('admin')}"}
    host_token = uuid.uuid4().hex
    host = http.post(f"{live.url}{API_PREFIX}/hosts/register", headers=admin, json={
        "name": f"hb-{uuid.uuid4().hex[:6]}", "url": "https://hb.invalid:8700", "token": host_token,
        "cert_pem": some_certificate(tmp_path), "vcpus": 4, "memory_mib": 4096,
        "disk_free_mib": 1000}).json()["id"]
    resource_id = parse_id(rid, "resource")
    placed_at = vm_ref(parse_id(host, "host"), rid)
    with psycopg.connect(database_url) as conn:  # as if placed there
        [original] = conn.execute("SELECT provider_resource_id FROM compute_resources WHERE id = %s",
                                  (resource_id,)).fetchone() or [None]
        conn.execute("UPDATE compute_resources SET provider_resource_id = %s WHERE id = %s",
                     (placed_at, resource_id))
    try:
        beat = http.post(f"{live.url}{API_PREFIX}/hosts/{host}/heartbeat",
                         headers={"Authorization": f"Bearer {host_token}"},
                         json={"vcpus": 4, "memory_mib": 4096, "disk_free_mib": 1000, "metrics": {
                             "vms": {rid: {"state": "running", "cpu_seconds": 1.5, "rss_bytes": 2**27}}}})
        assert beat.status_code == 200, beat.text
        assert samples_of(database_url, resource_id) == 1
    finally:  # the session's other tests see neither the host nor the placement
        http.delete(f"{live.url}{API_PREFIX}/hosts/{host}", headers=admin, params={"force": "true"})
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE compute_resources SET provider_resource_id = %s WHERE id = %s",
                         (original, resource_id))
