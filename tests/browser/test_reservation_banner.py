"""The "ends soon" banner in a real browser (Debian's chromium): a reservation ending within
the warning time shows on the dashboard, the reservations page and the pages of a resource
and a QKD network running inside it, naming what will be deleted; its Extend button moves the end and the
banner goes. Another project's user sees no banner."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest

from tests.browser.conftest import dev_login, own, shot
from tests.conftest import LiveServer
from tests.helpers import Api

pytestmark = pytest.mark.browser


def test_ending_soon_banner_everywhere_and_extend(page: Any, live: LiveServer, api: Api,
                                                  catalog: dict[str, str]) -> None:
    sfx = uuid.uuid4().hex[:6]
    item, experiment, project = f"fpga-end-{sfx}", f"end{sfx}", f"lab-end-{sfx}"
    own(api, "POST", "/equipment", api.token("admin"), 201, json={"kind": "fpga", "name": item})
    token = api.token("alice", project, experiment)
    ends = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).replace(microsecond=0)
    booked = own(api, "POST", "/reservations", token, 201, json={"equipment": [item], "ends_at": ends.isoformat()})
    batch = api.create(token, [f"vm-{sfx}"], catalog["flavor"], catalog["image"], reservation_id=booked["id"])
    api.wait_task(token, batch["id"])
    resource = api.ok("GET", f"/tasks/{batch['id']}", token)["resource_ids"][0]
    network = api.ok("POST", "/qkd-networks", token, 201, json={
        "name": f"q-{sfx}", "nodes": [{"name": "a", "saes": ["a"]}, {"name": "b", "saes": ["b"]}],
        "links": [{"between": ["a", "b"], "length_km": 10}], "reservation_id": booked["id"]})
    expected = re.compile(rf"Reservation {item} ends in (9|10) min \(at {ends:%H:%M} UTC\); "
                          rf"resource vm-{sfx}, qkd network q-{sfx} will be deleted\.")

    dev_login(page, live, "alice", experiment, project=project)
    banner = page.locator(f'.ending-soon[data-reservation="{booked["id"]}"]')
    assert expected.search(" ".join(banner.inner_text().split())), banner.inner_text()
    page.goto(f"{live.url}/ui/resources/{resource}")
    assert expected.search(" ".join(banner.inner_text().split()))
    page.goto(f"{live.url}/ui/qkd-networks/{network['id']}")
    assert expected.search(" ".join(banner.inner_text().split()))
    page.goto(f"{live.url}/ui/reservations")
    assert expected.search(" ".join(banner.inner_text().split()))
    shot(page, "reservation-ending-soon", full_page=False)

    other = page.context.browser.new_context()
    try:
        bob = other.new_page()
        dev_login(bob, live, "bob", f"end{sfx}b", project=f"other-end-{sfx}")
        assert bob.locator(".ending-soon").count() == 0  # another project's: not shown
        bob.goto(f"{live.url}/ui/reservations")
        assert bob.locator(".ending-soon").count() == 0
    finally:
        other.close()

    page.goto(f"{live.url}/ui/")
    banner.get_by_role("button", name=f"Extend reservation {item} by 1 h").click()
    page.wait_for_url(re.compile(r".*/ui/reservations#r-.*"))
    assert "Extended to" in page.locator("#messages").inner_text()
    assert page.locator(".ending-soon").count() == 0
    after = own(api, "GET", "/reservations", token)
    assert [dt.datetime.fromisoformat(r["ends_at"]) for r in after if r["id"] == booked["id"]] == [
        ends + dt.timedelta(hours=1)]
