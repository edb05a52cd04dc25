"""The reservations calendar in a real browser (Debian's chromium) against the running
service: an admin registers equipment through the API; a user books a free slot from the
week view and sees it marked as theirs; another project's user sees it busy, is refused the
same slot with the conflict and the free windows offered, and books one of those; cancel
asks first and frees the slot; an admin cancels another project's reservation with a reason."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from slices_blueprint.core.dev_issuer import dev_ids
from tests.browser.conftest import PHONE, dev_login, own, shot
from tests.conftest import LiveServer
from tests.helpers import Api

pytestmark = pytest.mark.browser


def _project(name: str) -> str:
    return dev_ids("x", name, None)["project"]


def _reserve_for(page: Any, project: str) -> None:
    """Choose a project-wide reservation (dev experiments end in 7 days, sooner than next week's end)."""
    page.get_by_label("Reserve for").select_option(_project(project))


def _slot(page: Any, item: str, state: str) -> Any:
    return page.locator(f'[id="item-{item}"] .slot[data-state="{state}"]')


def test_book_a_free_slot_conflict_alternatives_and_cancel(page: Any, browser: Any, live: LiveServer,
                                                           api: Api) -> None:
    sfx = uuid.uuid4().hex[:6]
    pair, spool = f"qkd-pair-{sfx}", f"spool-{sfx}"
    for kind, name, attributes in (("qkd-device-pair", pair, {"wavelength_nm": 1550}),
                                   ("fibre-spool", spool, {"length_km": 25})):
        own(api, "POST", "/equipment", api.token("admin"), 201,
             json={"kind": kind, "name": name, "attributes": attributes})

    dev_login(page, live, "alice", f"cal{sfx}", project=f"lab-{sfx}")
    page.get_by_role("link", name="Reservations").click()
    page.wait_for_url(f"{live.url}/ui/reservations")
    assert page.locator("table.week thead th").count() == 8  # the item column and seven days
    page.get_by_role("link", name="Next week →").click()  # wholly in the future, whatever the hour
    page.wait_for_url(re.compile(r".*/ui/reservations\?week=\d{4}-\d\d-\d\d$"))
    assert _slot(page, pair, "free").count() == 56  # 7 days of 3-hour blocks, all free
    assert "microVM capacity" in page.locator("table.week").inner_text()
    first = _slot(page, pair, "free").first.get_by_role("link")
    book_url = first.get_attribute("href")
    first.click()
    page.wait_for_url(re.compile(r".*/ui/reservations/new\?equipment=.*&start=.*T00:00$"))
    assert page.get_by_label("Equipment item").input_value() == pair
    assert page.get_by_label("Start (UTC)").input_value().endswith("T00:00")
    page.get_by_label("Duration (hours)").fill("6")
    _reserve_for(page, f"lab-{sfx}")
    page.get_by_role("button", name="Book").click()
    page.wait_for_url(re.compile(r".*/ui/reservations\?week=.*"))
    assert f"Reserved {pair} from" in page.locator("#messages").inner_text()
    mine = _slot(page, pair, "yours")
    assert mine.count() == 2 and "yours" in mine.first.inner_text()  # 00-03 and 03-06
    assert mine.first.get_by_role("link").get_attribute("href").startswith("#r-reservation_")
    assert _slot(page, pair, "free").count() == 54
    row = page.locator("tr[id^='r-reservation_']", has_text=pair)
    assert row.count() == 1 and "scheduled" in row.inner_text() and re.search(r"\tin \d+ (d|h)", row.inner_text())
    badge = row.locator(".badge")  # coloured like the other pages' statuses, and saying it
    assert badge.inner_text() == "scheduled" and badge.get_attribute("data-tone") == "busy"
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")
    assert "project-wide" in row.inner_text()
    shot(page, "reservations-week")

    other = browser.new_context(viewport=PHONE)
    try:
        bob = other.new_page()
        dev_login(bob, live, "bob", f"cal{sfx}b", project=f"other-{sfx}")
        bob.goto(f"{live.url}/ui/reservations?week={page.url.split('week=')[1][:10]}")
        assert _slot(bob, pair, "busy").count() == 2  # another project's: busy, not linked
        assert _slot(bob, pair, "busy").get_by_role("link").count() == 0
        bob.locator(f'[id="item-{pair}"]').scroll_into_view_if_needed()
        assert bob.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # a list per day, no sideways scroll
        shot(bob, "reservations-phone", full_page=False)
        bob.goto(f"{live.url}{book_url}")
        bob.get_by_label("Duration (hours)").fill("2")
        _reserve_for(bob, f"other-{sfx}")
        bob.get_by_role("button", name="Book").click()
        conflict = bob.locator("#conflict")
        assert "Not available then" in conflict.inner_text()
        assert f"{pair} is reserved" in conflict.inner_text()
        assert bob.get_by_label("Duration (hours)").input_value() == "2"  # nothing typed is lost
        assert bob.get_by_label("Equipment item").input_value() == pair
        alternatives = bob.locator("#alternatives a")
        assert alternatives.count() >= 1 and "06:00" in alternatives.first.inner_text()  # when alice's ends
        bob.set_viewport_size({"width": 1280, "height": 860})
        shot(bob, "reservations-conflict")
        alternatives.first.click()
        assert bob.get_by_label("Start (UTC)").input_value().endswith("T06:00")
        assert bob.get_by_label("Duration (hours)").input_value() == "2"
        assert bob.get_by_label("Reserve for").input_value() == _project(f"other-{sfx}")
        bob.get_by_role("button", name="Book").click()
        bob.wait_for_url(re.compile(r".*/ui/reservations\?week=.*"))
        assert f"Reserved {pair} from" in bob.locator("#messages").inner_text()
        assert _slot(bob, pair, "yours").count() == 1  # 06-08 in the 06-09 block
    finally:
        other.close()

    page.reload()
    row.get_by_role("spinbutton").fill("1")
    row.get_by_role("button", name="Extend").click()  # bob's holds 06:00-08:00: refused, said by the field
    assert re.search(rf"cannot extend: {pair} is reserved 2\d{{3}}-\d\d-\d\d 06:00", row.locator("small[id$='-error']").inner_text())
    row.get_by_role("button", name="Cancel").click()
    page.wait_for_url(re.compile(r".*/cancel$"))
    assert "Cancel the reservation?" in page.locator("h1").inner_text()
    page.get_by_role("button", name="Yes, cancel it").click()
    page.wait_for_url(f"{live.url}/ui/reservations")
    assert "Cancelled the reservation." in page.locator("#messages").inner_text()
    assert page.locator("tr[id^='r-reservation_']", has_text=pair).count() == 0

    dev_login(page, live, "admin", f"cal{sfx}adm", project=f"ops-{sfx}")
    page.goto(f"{live.url}/ui/reservations")
    bobs = page.locator("tr[id^='r-reservation_']", has_text=_project(f"other-{sfx}"))
    assert bobs.count() == 1  # an admin sees every project's
    bobs.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel it").click()  # no reason: refused, said by the field
    assert "reason" in page.locator("#reason-error").inner_text()
    page.get_by_label(re.compile("^Reason")).fill("the device pair goes for calibration")
    page.get_by_role("button", name="Yes, cancel it").click()
    page.wait_for_url(f"{live.url}/ui/reservations")
    assert page.locator("tr[id^='r-reservation_']", has_text=_project(f"other-{sfx}")).count() == 0
    reason = own(api, "GET", "/reservations?include_past=true", api.token("bob", f"other-{sfx}"))
    assert [r["cancel_reason"] for r in reason] == ["the device pair goes for calibration"]
