"""Per-project quotas over real HTTP and a real PostgreSQL: an over-quota batch is refused
with the numbers, 20 parallel requests cannot pass a quota together, admins (only) override."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from slices_blueprint.core.database import Database
from slices_blueprint.core.deps import API_PREFIX
from slices_blueprint.core.dev_issuer import dev_ids
from slices_blueprint.quotas import service as quota_service
from tests.conftest import LiveServer, make_settings, service_of_its_own
from tests.helpers import Api

SITE_VCPUS = 6


@pytest.fixture(scope="module")
def server(pg_admin_url, data_dir) -> Iterator[LiveServer]:
    """The service with site quotas (6 vCPUs, 5 test-double instances per project); no
    worker, so resources stay pending and count as live."""
    with service_of_its_own(pg_admin_url, data_dir, worker=False, quota_vcpus=SITE_VCPUS,
                            quota_flavor_types={"test-double": 5}) as live:
        yield live


@pytest.fixture(scope="module")
def api(server, http) -> Api:
    return Api(server, http)


@pytest.fixture(scope="module")
def catalog(api: Api) -> tuple[str, str]:
    """A 2-vCPU, 1 GiB test-double flavor and an image for it."""
    admin = api.token("admin")
    suffix = uuid.uuid4().hex[:6]
    flavor = api.ok(
        "POST",
        "/flavors",
        admin,
        201,
        json={
            "friendly_name": f"td.two-{suffix}",
            "flavor_type": "test-double",
            "vcpus": 2,
            "ram_mib": 1024,
        },
    )
    image = api.ok(
        "POST",
        "/disk-images",
        admin,
        201,
        json={
            "friendly_name": f"img-{suffix}",
            "flavor_type": "test-double",
            "location": f"td-{suffix}",
        },
    )
    return flavor["id"], image["id"]


def quotas(api: Api, token: str, project: str | None = None) -> dict | list:
    path = f"{API_PREFIX}/quotas" + (f"/{project}" if project else "")
    response = api.http.get(f"{api.live.url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def put_quota(api: Api, token: str, project: str, body: dict) -> httpx.Response:
    return api.http.put(
        f"{api.live.url}{API_PREFIX}/quotas/{project}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


def post(api: Api, token: str, names: list[str], catalog: tuple[str, str]) -> httpx.Response:
    flavor, image = catalog
    return api.call(
        "POST",
        "/resources",
        token,
        json={
            "request_id": str(uuid.uuid4()),
            "resources": [
                {"friendly_name": n, "flavor_id": flavor, "disk_image_id": image} for n in names
            ],
        },
    )


def live_count(database_url: str, project_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM compute_resources WHERE project_id = %s AND status <> 'deleted'",
            (project_id,),
        ).fetchone()
    assert row is not None
    return row[0]


def project_id(name: str) -> str:
    return dev_ids("x", name, None)["project"]


def test_over_quota_batch_is_refused_with_the_numbers(api: Api, catalog, server) -> None:
    token = api.token("alice", "q-over", "e1")
    assert post(api, token, ["a1", "a2"], catalog).status_code == 202  # 4 of 6 vCPUs
    refused = post(api, token, ["a3", "a4"], catalog)  # 4 more: 8 > 6
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["title"] == "Quota exceeded"
    assert "vcpus: 4 used + 4 requested > 6 allowed" in problem["detail"]
    assert problem["quota"] == [{"limit": "vcpus", "used": 4, "requested": 4, "allowed": 6}]
    assert (
        live_count(server.settings.database_url, project_id("q-over")) == 2
    )  # nothing of the refused batch
    assert post(api, token, ["a3"], catalog).status_code == 202  # exactly up to the limit: 6 of 6
    [mine] = quotas(api, token)
    assert mine["project_id"] == project_id("q-over")
    assert mine["usage"] == {
        "instances": 3,
        "vcpus": 6,
        "ram_mib": 3072,
        "flavor_types": {"test-double": 3},
    }
    assert mine["limits"] == {
        "instances": None,
        "vcpus": 6,
        "ram_mib": None,
        "flavor_types": {"test-double": 5},
    }


def test_a_flavor_type_limit_counts_instances_of_that_type(api: Api, catalog) -> None:
    admin = api.token("admin")
    project = project_id("q-type")
    body = {"vcpus": None, "flavor_types": {"test-double": 1}}  # vCPUs unlimited, one test-double
    assert put_quota(api, admin, project, body).status_code == 200
    token = api.token("bob", "q-type", "e1")
    assert post(api, token, ["t1"], catalog).status_code == 202
    refused = post(api, token, ["t2"], catalog)
    assert refused.status_code == 403
    assert refused.json()["quota"] == [
        {"limit": "flavor_types.test-double", "used": 1, "requested": 1, "allowed": 1}
    ]


def test_twenty_parallel_requests_get_exactly_the_quota(api: Api, catalog, server) -> None:
    """Two experiments of one project race 20 single-resource requests at a quota of 5."""
    allowed = 5
    project = project_id("q-race")
    assert (
        put_quota(
            api, api.token("admin"), project, {"instances": allowed, "vcpus": None}
        ).status_code
        == 200
    )
    tokens = [api.token("carol", "q-race", "race-a"), api.token("carol", "q-race", "race-b")]
    for token in tokens:  # the project and experiments on record: the race has no row to upsert
        api.ok("GET", "/resources", token)
    flavor, image = catalog

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(i: int) -> int:
                body = {
                    "request_id": str(uuid.uuid4()),
                    "resources": [
                        {"friendly_name": f"r{i}", "flavor_id": flavor, "disk_image_id": image}
                    ],
                }
                response = await client.post(
                    f"{api.live.bi}/resources",
                    json=body,
                    headers={"Authorization": f"Bearer {tokens[i % 2]}"},
                )
                return response.status_code

            return await asyncio.gather(*(one(i) for i in range(20)))

    statuses = asyncio.run(race())
    assert sorted(statuses) == [202] * allowed + [403] * (20 - allowed)
    assert live_count(server.settings.database_url, project) == allowed


def test_an_admin_override_takes_effect_and_can_be_undone(api: Api, catalog) -> None:
    admin, token = api.token("admin"), api.token("dave", "q-admin", "e1")
    project = project_id("q-admin")
    assert post(api, token, ["o1", "o2", "o3"], catalog).status_code == 202  # 6 of 6 vCPUs
    assert post(api, token, ["o4"], catalog).status_code == 403
    raised = put_quota(api, admin, project, {"vcpus": 10})
    assert raised.status_code == 200, raised.text
    assert raised.json()["limits"]["vcpus"] == 10 and raised.json()["override"] == {"vcpus": 10}
    assert post(api, token, ["o4"], catalog).status_code == 202  # 8 of 10
    restored = put_quota(api, admin, project, {})  # back to the site defaults
    assert restored.json()["limits"]["vcpus"] == SITE_VCPUS
    assert post(api, token, ["o5"], catalog).status_code == 403


def test_an_unknown_flavor_type_is_refused(api: Api) -> None:
    response = put_quota(
        api, api.token("admin"), project_id("q-typo"), {"flavor_types": {"mikrovm": 1}}
    )
    assert response.status_code == 422
    assert "mikrovm not offered by this site" in response.json()["detail"]


def test_a_non_admin_cannot_change_quotas(api: Api, catalog) -> None:
    project = project_id("q-self")
    user, experiment = api.token("eve", "q-self"), api.token("eve", "q-self", "e1")
    for token in (user, experiment):
        refused = put_quota(api, token, project, {"vcpus": 1000})
        assert refused.status_code == 403, refused.text
        assert "administrators" in refused.json()["detail"]
    assert quotas(api, user, project)["limits"]["vcpus"] == SITE_VCPUS  # unchanged
    other = project_id("q-over")  # someone else's project: not even readable
    response = api.http.get(
        f"{api.live.url}{API_PREFIX}/quotas/{other}", headers={"Authorization": f"Bearer {user}"}
    )
    assert response.status_code == 404


def test_the_cli_shows_limits_and_usage(api: Api, catalog, server) -> None:
    token = api.token("frank", "q-cli", "e1")
    assert post(api, token, ["c1"], catalog).status_code == 202
    env = {
        **os.environ,
        "SLICES_BLUEPRINT_URL": server.url,
        "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
        "SLICES_BLUEPRINT_TOKEN": token,
    }
    run = [sys.executable, "-m", "slices_blueprint", "quota"]
    as_json = subprocess.run(
        [*run, "--json"], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    [row] = json.loads(as_json.stdout)
    assert row["usage"]["vcpus"] == 2 and row["limits"]["vcpus"] == SITE_VCPUS
    table = subprocess.run(
        run, env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "vcpus" in table and "2" in table and "6" in table and "unlimited" in table


async def test_a_process_with_no_usage_counter_refuses_instead_of_admitting(
    database_url, data_dir, monkeypatch
) -> None:
    """Quotas learn usage from counters wired at start-up (``domains.wire``); a process
    built without them fails loudly on a bounded quota rather than counting nothing."""
    monkeypatch.setattr(quota_service, "_counters", {})
    db = Database(database_url, pool_size=1)
    try:
        async with db.session() as session:
            unbounded = make_settings(data_dir, database_url, 0)
            await quota_service.admit(session, unbounded, "proj_unwired", [])  # nothing to count
            bounded = make_settings(data_dir, database_url, 0, quota_instances=1)
            with pytest.raises(RuntimeError, match="no quota usage counter"):
                await quota_service.admit(session, bounded, "proj_unwired", [])
            with pytest.raises(RuntimeError, match="no quota usage counter"):
                await quota_service.quota_out(session, unbounded, "proj_unwired")
    finally:
        await db.dispose()
