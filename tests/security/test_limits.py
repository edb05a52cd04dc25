"""Request limits, each abused over real HTTP against a real PostgreSQL: oversized bodies
(with and without Content-Length, unauthenticated), oversized userdata and request_config,
one wait too many, and a flood of audit events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, service_of_its_own
from tests.helpers import Api

MIB = 1024 * 1024
WAITS = 2
EVENTS_PER_MINUTE = 5


@pytest.fixture(scope="module")
def server(pg_admin_url, data_dir) -> Iterator[LiveServer]:
    """Small limits; no worker, so resources stay pending (a wait on them waits)."""
    with service_of_its_own(pg_admin_url, data_dir, worker=False, max_userdata_bytes=1024,
                            max_request_config_bytes=512, max_waits_per_experiment=WAITS,
                            audit_events_per_resource_per_minute=EVENTS_PER_MINUTE) as live:
        yield live


@pytest.fixture(scope="module")
def api(server, http) -> Api:
    return Api(server, http)


@pytest.fixture(scope="module")
def catalog(api: Api) -> tuple[str, str]:
    return api.test_double_catalog()


def assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["title"] == "Payload too large" and problem["limit"] == MIB
    assert f"larger than the {MIB} bytes" in problem["detail"]


def test_a_2_mib_body_with_content_length_is_refused_before_auth_and_parsing(api: Api) -> None:
    """Not JSON and no token: parsing would say 422, authentication 401; the cap says 413 first."""
    started = time.monotonic()
    response = api.http.post(
        f"{api.live.bi}/resources",
        content=b"x" * (2 * MIB),
        headers={"Content-Type": "application/json"},
    )
    assert_413(response)
    assert time.monotonic() - started < 10


def test_a_2_mib_chunked_body_is_counted_while_streaming(api: Api) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(32):  # 32 x 64 KiB, no Content-Length: Transfer-Encoding chunked
            sent += 64 * 1024
            yield b"y" * (64 * 1024)

    request = api.http.build_request(
        "POST",
        f"{api.live.bi}/resources",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert (
        "content-length" not in request.headers
        and request.headers["transfer-encoding"] == "chunked"
    )
    assert_413(api.http.send(request))


def test_a_body_under_the_cap_still_reaches_the_api(api: Api) -> None:
    response = api.http.post(
        f"{api.live.bi}/resources", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401  # past the cap: authentication answers


def test_oversized_userdata_and_request_config_are_422_naming_the_limit(api: Api, catalog) -> None:
    flavor, image = catalog
    token = api.token("alice", "lim", "sizes")

    def create(**spec: object) -> httpx.Response:
        return api.call(
            "POST",
            "/resources",
            token,
            json={
                "request_id": str(uuid.uuid4()),
                "resources": [
                    {"friendly_name": "big", "flavor_id": flavor, "disk_image_id": image, **spec}
                ],
            },
        )

    userdata = create(userdata="#cloud-config\n" + "a" * 2000)
    assert userdata.status_code == 422, userdata.text
    assert userdata.json()["limit"] == 1024
    assert "resources.0.userdata: 2014 bytes, more than the 1024 bytes" in userdata.json()["detail"]
    config = create(request_config={"blob": "b" * 600})
    assert config.status_code == 422 and config.json()["limit"] == 512
    assert "resources.0.request_config" in config.json()["detail"]
    assert api.ok("GET", "/resources", token) == []  # nothing recorded
    assert create(userdata="#cloud-config\n", request_config={"small": True}).status_code == 202


def test_one_wait_more_than_allowed_is_429_with_retry_after(api: Api, catalog) -> None:
    flavor, image = catalog
    token = api.token("bob", "lim", "waits")
    names = [f"w{i}" for i in range(WAITS + 1)]
    task = api.create(token, names, flavor, image)
    ids = task["resource_ids"]
    headers = {"Authorization": f"Bearer {token}"}

    async def waits() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:

            async def wait(rid: str, delay: float, timeout: float) -> httpx.Response:
                await asyncio.sleep(delay)
                return await client.get(
                    f"{api.live.bi}/resources/{rid}/wait",
                    params={"timeout": timeout, "state": "running"},
                    headers=headers,
                )

            # WAITS long waits on pending resources, then one more while they run
            return await asyncio.gather(
                *(wait(rid, 0, 4) for rid in ids[:WAITS]), wait(ids[WAITS], 1.5, 4)
            )

    *held, extra = asyncio.run(waits())
    assert [r.status_code for r in held] == [408] * WAITS  # they ran to their timeout
    assert extra.status_code == 429, extra.text
    assert extra.headers["retry-after"] == "5" and extra.json()["limit"] == WAITS
    after = api.call("GET", f"/resources/{ids[WAITS]}/wait", token, params={"timeout": 0.5})
    assert after.status_code == 408  # the slots were given back


def test_an_event_flood_is_bounded_without_failing_the_user(api: Api, catalog) -> None:
    flavor, image = catalog
    token = api.token("carol", "lim", "flood")
    rid = api.create(token, ["noisy"], flavor, image)["resource_ids"][0]  # 1 event: resource.create
    for _ in range(40):
        api.ok("POST", f"/resources/{rid}/extend", token, json={"duration_hours": 1})
    events = api.ok("GET", f"/resources/{rid}/events", token)
    actions = [e["action"] for e in reversed(events)]
    assert actions == ["resource.create"] + ["resource.extend"] * (EVENTS_PER_MINUTE - 1) + [
        "audit.rate_limited"
    ]
    assert events[0]["detail"] == {
        "first_dropped": "resource.extend",
        "per_minute": EVENTS_PER_MINUTE,
    }
