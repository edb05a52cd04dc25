"""The reaper deletes what expired; the reconciler records drift and orphans."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg

from slices_blueprint.core.database import Database
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.resources.scheduled import reconcile
from tests.helpers import Api, wait_for


def test_reaper_deletes_expired_resources(live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "reap")
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).isoformat()
    task = api.create(token, ["ephemeral"], flavor, image, expires_at=expires)
    api.wait_task(token, task["id"])
    rid = task["resource_ids"][0]
    wait_for(lambda: api.ok("GET", f"/resources/{rid}", token)["status"] == "deleted", 60,
             "the reaper deleting the expired resource", interval=0.5)
    actors = {(e["action"], e["actor"]) for e in api.ok("GET", f"/resources/{rid}/events", token)}
    assert ("resource.delete", "system:reaper") in actors
    node_files = list((live.settings.data_dir / "test-double").glob("*.json"))
    assert not any(rid.rsplit("_", 1)[-1] in p.name for p in node_files)


def test_reconciler_records_drift_and_orphans(live, http, database_url) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "drift")
    task = api.create(token, ["vanishing", "steady", "powered-off"], flavor, image)
    api.wait_task(token, task["id"])
    vanishing, _, powered_off = (api.ok("GET", f"/resources/{rid}", token) for rid in task["resource_ids"])
    # the node disappears behind our back; one is powered off; a node appears that no resource owns
    nodes = live.settings.data_dir / "test-double"
    (nodes / f"{vanishing['provider_resource_id']}.json").unlink()
    node_file = nodes / f"{powered_off['provider_resource_id']}.json"
    node_file.write_text(node_file.read_text().replace('"running"', '"stopped"'))
    orphan = live.settings.data_dir / "test-double" / "td-orphan.json"
    orphan.write_text('{"resource_id": "resource_test-site1_01kzzzzzzzzzzzzzzzzzzzzzzz", "state": "running", "creations": 1, "ipv4": "x"}')

    async def run() -> dict[str, int]:
        db = Database(database_url)
        try:
            return await reconcile(Runtime(settings=live.settings, db=db))
        finally:
            await db.dispose()

    found = asyncio.run(run())
    orphan.unlink()
    assert found["drift"] >= 1 and found["orphans"] >= 1
    after = api.ok("GET", f"/resources/{vanishing['id']}", token)
    assert after["status"] == "error" and "vanished" in after["status_reason"]
    assert api.ok("GET", f"/resources/{task['resource_ids'][1]}", token)["status"] == "running"
    # powered off outside our control: stopped (not an error), so the user can start it
    stopped = api.ok("GET", f"/resources/{powered_off['id']}", token)
    assert stopped["status"] == "stopped" and "stopped" in stopped["status_reason"]
    started = api.ok("POST", f"/resources/{powered_off['id']}/start", token, 202)
    assert api.wait_task(token, started["id"])["status"] == "succeeded"
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events WHERE action = 'provider.orphan' AND message LIKE '%td-orphan%'").fetchone()
    assert count >= 1


def test_reconciler_deletes_what_a_gone_resource_left_behind(live, http, database_url) -> None:
    """Quota must not leak: a node whose resource was deleted is removed once the grace has
    passed; a node of an unknown resource is only reported; another site's is left alone."""
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "orphans")
    task = api.create(token, ["leaky", "keeper"], flavor, image)
    api.wait_task(token, task["id"])
    leaky = api.ok("GET", f"/resources/{task['resource_ids'][0]}", token)
    nodes = live.settings.data_dir / "test-double"
    leftover = (nodes / f"{leaky['provider_resource_id']}.json").read_text()
    api.wait_task(token, api.ok("DELETE", f"/resources/{leaky['id']}", token, 202)["id"])
    (nodes / f"{leaky['provider_resource_id']}.json").write_text(leftover)  # the delete "missed" it
    unknown = nodes / "td-unknown.json"
    unknown.write_text('{"resource_id": "resource_test-site1_01kzzzzzzzzzzzzzzzzzzzzzzy", "state": "running", "creations": 1, "ipv4": "x"}')
    foreign = nodes / "td-foreign.json"
    foreign.write_text('{"resource_id": "resource_other-site9_01kzzzzzzzzzzzzzzzzzzzzzzy", "state": "running", "creations": 1, "ipv4": "x"}')

    async def run(grace: int, **update: object) -> dict[str, int]:
        db = Database(database_url)
        try:
            settings = live.settings.model_copy(update={"orphan_grace_minutes": grace, **update})
            return await reconcile(Runtime(settings=settings, db=db))
        finally:
            await db.dispose()

    try:
        # a site that stopped offering the type skips its resources instead of failing
        skipped = asyncio.run(run(grace=0, providers=["vm"]))
        assert skipped["orphans_deleted"] == 0 and (nodes / f"{leaky['provider_resource_id']}.json").exists()
        first = asyncio.run(run(grace=30))  # seen for the first time: reported, kept for now
        assert (nodes / f"{leaky['provider_resource_id']}.json").exists()
        second = asyncio.run(run(grace=0))
        assert first["orphans_deleted"] == 0 and second["orphans_deleted"] == 1
        assert not (nodes / f"{leaky['provider_resource_id']}.json").exists()
        assert unknown.exists() and foreign.exists()
        assert api.ok("GET", f"/resources/{task['resource_ids'][1]}", token)["status"] == "running"
        events = api.ok("GET", f"/resources/{leaky['id']}/events", token)
        assert [e["action"] for e in events if e["action"].startswith("provider.")] == [
            "provider.orphan_deleted", "provider.orphan"]  # recorded once, then deleted
        with psycopg.connect(database_url) as conn:
            (foreign_events,) = conn.execute(
                "SELECT count(*) FROM events WHERE detail->>'provider_resource_id' = 'td-foreign'").fetchone()
        assert foreign_events == 0
    finally:
        unknown.unlink(missing_ok=True)
        foreign.unlink(missing_ok=True)
