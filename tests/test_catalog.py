"""Flavors and disk images over the BI API: reads for any token, writes for admins only."""

from __future__ import annotations

import asyncio
import uuid

from slices_blueprint.catalog.models import Flavor
from slices_blueprint.catalog.sync import SyncReport, sync_catalog
from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import body_id
from slices_blueprint.providers.test_double.driver import TestDoubleDriver
from tests.helpers import Api, wait_for


def test_admin_creates_and_everyone_reads(live, http) -> None:
    api = Api(live, http)
    flavor_id, image_id = api.test_double_catalog()
    assert flavor_id.startswith("flavor_test-site1_") and image_id.startswith("image_test-site1_")
    user = api.token("bob")
    assert flavor_id in [f["id"] for f in api.ok("GET", "/flavors", user)]
    image = api.ok("GET", f"/disk-images/{image_id}", user)
    assert image["default_username"] == "debian" and image["flavor_type"] == "test-double"


def test_non_admin_cannot_write(live, http) -> None:
    api = Api(live, http)
    body = {"friendly_name": "x", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 512}
    response = api.call("POST", "/flavors", api.token("bob"), json=body)
    assert response.status_code == 403 and "administrators" in response.json()["detail"]
    response = api.call("POST", "/flavors", api.token("bob", experiment="e1"), json=body)
    assert response.status_code == 403


def test_invalid_catalog_input_is_422_with_the_field(live, http) -> None:
    api = Api(live, http)
    response = api.call("POST", "/flavors", api.token("admin"), json={"friendly_name": "x", "flavor_type": "mainframe", "vcpus": 0, "ram_mib": 1})
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422 and "flavor_type" in problem["detail"]
    assert {tuple(e["loc"])[-1] for e in problem["errors"]} >= {"flavor_type", "vcpus", "ram_mib"}


def test_duplicate_provider_reference_is_409(live, http) -> None:
    api = Api(live, http)
    ref = uuid.uuid4().hex
    body = {"friendly_name": "a", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 512, "provider_ref": ref}
    api.ok("POST", "/flavors", api.token("admin"), 201, json=body)
    assert api.call("POST", "/flavors", api.token("admin"), json=body).status_code == 409


def test_hidden_entries_vanish_for_users(live, http) -> None:
    """Also once the process keeps the listed answers: the admin's listing with hidden entries
    is never the answer to a user asking for them."""
    api = Api(live, http)
    cache = live.server.config.app.state.catalog_cache
    wait_for(lambda: cache.listening, 10, "the catalog listener")
    flavor_id, _ = api.test_double_catalog()
    api.ok("PATCH", f"/flavors/{flavor_id}", api.token("admin"), json={"hidden": True})
    assert flavor_id not in [f["id"] for f in api.ok("GET", "/flavors", api.token("bob"))]
    for _ in range(2):  # answered, then answered as kept
        listed = api.ok("GET", "/flavors", api.token("admin"), params={"include_hidden": True})
        assert flavor_id in [f["id"] for f in listed]
        assert cache._answers
        listed = api.ok("GET", "/flavors", api.token("bob"), params={"include_hidden": True})
        assert flavor_id not in [f["id"] for f in listed]


def test_malformed_and_unknown_ids_are_404(live, http) -> None:
    api = Api(live, http)
    assert api.call("GET", "/flavors/nonsense", api.token()).status_code == 404
    assert api.call("GET", "/flavors/flavor_test-site1_01kzzzzzzzzzzzzzzzzzzzzzzz", api.token()).status_code == 404


def test_sync_keeps_what_an_admin_hid(live, http, database_url) -> None:
    """A catalog sync (here from the TEST DOUBLE provider's catalog) never shows again an
    entry an admin hid; showing it is the admin's call too."""
    api = Api(live, http)
    cluster = f"c-{uuid.uuid4().hex[:6]}"

    async def sync() -> SyncReport:
        db = Database(database_url)
        try:
            async with db.session() as session:
                driver = TestDoubleDriver.from_settings(live.settings, None, None)
                return await sync_catalog(session, driver, "test-double", cluster)
        finally:
            await db.dispose()

    assert "flavor:td.small" in asyncio.run(sync()).added
    admin = api.token("admin")
    (synced,) = [f for f in api.ok("GET", "/flavors", admin) if f["cluster_id"] == cluster]
    api.ok("PATCH", f"/flavors/{synced['id']}", admin, json={"hidden": True})
    again = asyncio.run(sync())
    assert "flavor:td.small" in again.unchanged and not again.updated
    listed = api.ok("GET", "/flavors", admin, params={"include_hidden": True})
    assert [f["hidden"] for f in listed if f["id"] == synced["id"]] == [True]
    api.ok("PATCH", f"/flavors/{synced['id']}", admin, json={"hidden": False})
    asyncio.run(sync())
    assert synced["id"] in [f["id"] for f in api.ok("GET", "/flavors", api.token("bob"))]


def test_requests_see_a_catalog_change_made_by_any_process(live, http, database_url) -> None:
    """API processes keep flavors and images in memory; a change committed elsewhere (here
    another connection, as a worker's catalog sync) reaches the next requests (NOTIFY)."""
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "catalog-cache")
    api.create(token, ["kept"], flavor, image)
    flavor_uuid = body_id(flavor, "flavor", "flavor_id")
    cache = live.server.config.app.state.catalog_cache
    wait_for(lambda: cache.listening, 10, "the catalog listener")
    assert (Flavor, flavor_uuid) in cache._rows  # read once, then kept

    def listed() -> list[str]:
        response = api.call("GET", "/flavors", token)
        assert response.status_code == 200, response.text
        return [f["id"] for f in response.json()]

    assert flavor in listed()
    assert cache._lists and cache._answers  # the listing is kept too, and its answer

    async def hide() -> None:
        db = Database(database_url)
        try:
            async with db.session() as session:
                row = await session.get(Flavor, flavor_uuid)
                assert row is not None
                row.hidden = True
        finally:
            await db.dispose()

    asyncio.run(hide())

    def refused() -> bool:
        response = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "resources": [
            {"friendly_name": f"n{uuid.uuid4().hex[:6]}", "flavor_id": flavor, "disk_image_id": image}]})
        assert response.status_code in (202, 422), response.text
        return response.status_code == 422 and "no such flavor" in response.text

    wait_for(refused, 5, "the hidden flavor refused", interval=0.05)
    wait_for(lambda: flavor not in listed(), 5, "the hidden flavor unlisted", interval=0.05)
