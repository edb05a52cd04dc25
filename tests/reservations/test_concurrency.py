"""Concurrent requests for one slot over real HTTP: exactly one wins; concurrent "any N of a
kind" requests take different items."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg

from slices_blueprint.core.deps import API_PREFIX
from tests.reservations.conftest import OwnApi, day


def _race(api: OwnApi, bodies: list[tuple[str, dict]]) -> list[httpx.Response]:
    """POST every (token, body) at once, each from its own thread and connection."""
    url = f"{api.live.url}{API_PREFIX}/reservations"

    def post(item: tuple[str, dict]) -> httpx.Response:
        token, body = item
        with httpx.Client(timeout=60) as client:
            return client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_twenty_parallel_requests_for_one_slot_give_exactly_one_reservation(api: OwnApi, resv_live, unique: str) -> None:
    (item,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    body = {"equipment": [item["name"]], "starts_at": day(20).isoformat(), "hours": 2}
    tokens = [api.token(f"u{i}", f"race-{unique}-{i}", "e") for i in range(20)]
    answers = _race(api, [(token, body) for token in tokens])

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 19, [a.text for a in answers if a.status_code not in (201, 409)]
    assert all(a.json()["alternatives"] for a in answers if a.status_code == 409)
    with psycopg.connect(resv_live.settings.database_url) as conn:
        held = conn.execute("SELECT count(*) FROM reserved_equipment r JOIN equipment e"
                            " ON e.number = r.equipment_number WHERE e.name = %s", (item["name"],)).fetchone()
    assert held == (1,)


def test_parallel_picks_of_a_kind_take_different_items(api: OwnApi, unique: str) -> None:
    kind = f"fpga-{unique}"
    api.equipment(kind, *(f"{kind}-{i}" for i in range(3)))
    body = {"any_of": [{"kind": kind, "count": 1}], "starts_at": day(21).isoformat(), "hours": 1}
    answers = _race(api, [(api.token(f"u{i}", f"pick-{unique}-{i}", "e"), body) for i in range(8)])

    won = [a.json() for a in answers if a.status_code == 201]
    assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 5
    assert sorted(r["equipment"][0]["name"] for r in won) == [f"{kind}-{i}" for i in range(3)]
    starts = {dt.datetime.fromisoformat(r["starts_at"]) for r in won}
    assert starts == {day(21)}
