"""A QKD network read while its reservation starts it: the answer shows the network as of one
instant, never half of the change (a network read in several statements, each on its own
snapshot, once answered 500 when the start committed between two of them).

The start is made by the service's own code (``qkd.service.start_networks``), on its own
engine, in another thread, at the moment the read's statement on the network's SAEs is about
to run: the race, made to happen every time. Real HTTP, the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event

from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import parse_id
from slices_blueprint.qkd.service import start_networks
from slices_blueprint.reservations.models import Reservation
from tests.conftest import LiveServer
from tests.helpers import Api
from tests.reservations.conftest import OwnApi, day


async def _start(live: LiveServer, reservation_id: uuid.UUID) -> list[str]:
    """What the reservations' clock does at the start, on an engine of its own."""
    db = Database(str(live.settings.database_url))
    try:
        async with db.session() as session:
            reservation = await session.get(Reservation, reservation_id)
            return await start_networks(session, live.settings, reservation)
    finally:
        await db.engine.dispose()


def _one(bi: Api, token: str, network: dict) -> dict:
    return bi.ok("GET", f"/qkd-networks/{network['id']}", token)


def _listed(bi: Api, token: str, network: dict) -> dict:
    (listed,) = [n for n in bi.ok("GET", "/qkd-networks", token) if n["id"] == network["id"]]
    return listed


@pytest.mark.parametrize("read", [_one, _listed], ids=["one", "listed"])
def test_a_network_started_while_it_is_read_is_answered_as_of_one_instant(
        api: OwnApi, bi: Api, resv_live: LiveServer, unique: str, read: Callable[[Api, str, dict], dict]) -> None:
    (pair,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    token = api.token("alice", f"snap-{unique}", "e")
    reservation = api.reserve(token, day(14), 1, equipment=[pair["name"]])
    network = bi.ok("POST", "/qkd-networks", token, 201, json={
        "name": f"s-{unique[:6]}", "reservation_id": reservation["id"],
        "nodes": [{"name": "alice", "saes": ["a"]}, {"name": "bob", "saes": ["b"]}],
        "links": [{"between": ["alice", "bob"], "length_km": 10}]})
    network_uuid, reservation_uuid = parse_id(network["id"], "qkdnet"), parse_id(reservation["id"], "reservation")
    started: list[list[str]] = []

    def start_before_the_saes_are_read(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters or ()
        if started or "FROM qkd_saes" not in statement or network_uuid not in values:
            return
        with ThreadPoolExecutor(1) as other:  # the server's loop waits here until the start commits
            started.append(other.submit(asyncio.run, _start(resv_live, reservation_uuid)).result(timeout=60))

    engine = resv_live.server.config.app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", start_before_the_saes_are_read)
    try:
        seen = read(bi, token, network)
    finally:
        event.remove(engine, "before_cursor_execute", start_before_the_saes_are_read)

    assert started == [[f"qkd network {network['name']}"]], "the start did not run inside the read"
    assert (seen["status"], seen["nodes"], seen["saes"], seen["links"]) == ("pending", [], [], []), seen
    now = read(bi, token, network)
    assert now["status"] == "active" and [n["name"] for n in now["nodes"]] == ["alice", "bob"]
    assert [s["sae_id"] for s in now["saes"]] == ["a", "b"] and [link["name"] for link in now["links"]] == ["alice-bob"]
    bi.ok("DELETE", f"/qkd-networks/{network['id']}", token)
