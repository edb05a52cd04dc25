"""Moments given with any UTC offset Python accepts (up to ±24 h) are taken as the instant they
name; PostgreSQL accepts offsets only up to ±15:59, and a moment sent to it with its given
offset once answered 500 (found by the API fuzzer: ``after=9537-07-24T09:52:38-17:18``).
A moment without an offset, or outside years 1-9999 once in UTC, is a 422 naming the field.
Real HTTP, the machine's PostgreSQL, the test-double provider."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from slices_blueprint.web.reservation_views import BookingForm
from tests.helpers import Api
from tests.reservations.conftest import OwnApi, day

FAR_WEST = dt.timezone(-dt.timedelta(hours=17, minutes=18))  # beyond PostgreSQL's ±15:59


def test_the_fuzzers_availability_query_is_answered(api: OwnApi, unique: str) -> None:
    token = api.token("alice", f"m-{unique}", "e")
    refused = api.call("GET", "/reservations/availability", token, params={
        "limit": 15, "vcpus": 2102, "count": 5, "hours": 82700.49506368388, "ram_mib": 54,
        "after": "9537-07-24T09:52:38.924133-17:18"})
    assert refused.status_code == 422, refused.text  # past the site's horizon: said so
    assert refused.json()["detail"].startswith(f"after: reservations may end at most {api.live.settings.reservation_horizon_days} days ahead")


def test_a_far_offset_names_its_instant_everywhere(api: OwnApi, bi: Api, unique: str) -> None:
    token = api.token("alice", f"m-{unique}", "e")
    (pair,) = api.equipment(f"far-{unique}", f"far-{unique}")
    start = day(21, minutes=30)
    reservation = api.reserve(token, start.astimezone(FAR_WEST), 1, equipment=[pair["name"]])
    assert dt.datetime.fromisoformat(reservation["starts_at"]) == start
    free = api.ok("GET", "/reservations/availability", token, params={
        "equipment": pair["name"], "hours": 1, "after": start.astimezone(FAR_WEST).isoformat(), "limit": 1})
    assert [dt.datetime.fromisoformat(s["starts_at"]) for s in free["slots"]] == [start + dt.timedelta(hours=1)]

    flavor, image = bi.test_double_catalog()
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
    task = bi.create(token, [f"far-{unique}"], flavor, image, expires_at=expires.astimezone(FAR_WEST).isoformat())
    resource = bi.ok("GET", f"/resources/{task['resource_ids'][0]}", token)
    assert dt.datetime.fromisoformat(resource["expires_at"]) == expires


@pytest.mark.parametrize("moment", ["2030-01-01T00:00:00", "0001-01-01T00:30:00+01:00"],
                         ids=["without-offset", "before-year-1-in-utc"])
def test_a_moment_without_an_offset_or_out_of_range_is_refused(api: OwnApi, bi: Api, unique: str, moment: str) -> None:
    token = api.token("alice", f"m-{unique}", "e")
    refused = [
        api.call("GET", "/reservations/availability", token, params={"hours": 1, "after": moment}),
        api.call("POST", "/reservations", token, json={"starts_at": moment, "hours": 1, "equipment": ["x"]}),
        bi.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "expires_at": moment, "resources": []}),
        bi.call("POST", "/qkd-networks", token, json={
            "name": "n", "expires_at": moment, "nodes": [{"name": "a"}, {"name": "b"}],
            "links": [{"between": ["a", "b"], "length_km": 1}]}),
    ]
    for response in refused:
        assert response.status_code == 422, (response.request.url, response.status_code, response.text)
        assert "expires_at" in response.text or "starts_at" in response.text or "after" in response.text


def test_the_booking_forms_start_is_utc_unless_it_gives_its_offset() -> None:
    """The web form's field sends a time without offset, meant as UTC; a start that names its
    offset (a link edited by hand) is the instant it names, not that wall time in UTC."""
    def start_of(text: str) -> dt.datetime:
        return BookingForm(equipment="pair", start=text, hours="2").request().starts_at

    assert start_of("2031-03-04T10:00") == dt.datetime(2031, 3, 4, 10, 0, tzinfo=dt.UTC)
    assert start_of("2031-03-04T10:00+02:00") == dt.datetime(2031, 3, 4, 8, 0, tzinfo=dt.UTC)
    assert start_of("2031-03-04T10:00-17:18") == dt.datetime(2031, 3, 5, 3, 18, tzinfo=dt.UTC)
