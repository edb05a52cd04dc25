"""What the pages show at a glance: coloured status badges that say the status, names rather
than ids, a dashboard table that fits a laptop, a copy button for the SSH command, a favicon,
and a create form with only the fields of the chosen flavor type."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.browser.conftest import dev_login
from tests.browser.test_live_updates import COUNT_MESSAGES
from tests.conftest import LiveServer
from tests.helpers import Api, wait_for

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _running(api: Api, token: str, catalog: dict[str, str], name: str) -> str:
    task = api.create(token, [name], catalog["flavor"], catalog["image"])
    api.wait_task(token, task["id"])
    return task["resource_ids"][0]


def _background(locator: Any) -> str:
    return locator.evaluate("e => getComputedStyle(e).backgroundColor")


def test_badges_names_and_copying_the_ssh_command(page: Any, live: LiveServer, api: Api,
                                                  catalog: dict[str, str]) -> None:
    experiment = f"looks{uuid.uuid4().hex[:6]}"
    token = api.token("alice", "demo", experiment)
    rid = _running(api, token, catalog, "shiny")
    failed = api.create(token, ["broken"], catalog["flavor"], catalog["image"], {"fail": "no capacity"})
    api.wait_task(token, failed["id"])
    dev_login(page, live, "alice", experiment)
    page.add_init_script(COUNT_MESSAGES)

    row = page.locator("#row-shiny")
    badge = row.locator(".badge")
    assert badge.inner_text() == "running" and badge.get_attribute("data-tone") == "ok"
    error = page.locator("#row-broken .badge")
    assert error.inner_text() == "error" and _background(error) != _background(badge)  # colour, and words
    cells = row.locator("td").all_inner_texts()
    assert experiment in cells and not any(c.startswith("exp_") for c in cells)  # the name, not the id

    page.goto(f"{live.url}/ui/resources/{rid}")
    assert re.search(rf"Experiment\s+{experiment} · project demo", page.locator("#details").inner_text())
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    command = page.locator("#ssh-command").inner_text()
    button = page.get_by_role("button", name="Copy SSH command")
    wait_for(lambda: page.evaluate("window.__sse") >= 1, 10, "the page's first live refresh")  # (it redraws the button)
    button.click()
    _expect()(page.locator("button[data-copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == command
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(f"{live.url}{icon}").headers["content-type"].startswith("image/svg+xml")
    assert page.request.get(f"{live.url}/favicon.ico").url.endswith(icon)  # (followed)


def test_admin_dashboard_fits_a_laptop(page: Any, live: LiveServer, api: Api, catalog: dict[str, str]) -> None:
    """Every column (the admin's too), long addresses and names: no sideways scrolling at 1280 px."""
    for project in ("ops", "a-rather-long-project-name"):
        token = api.token("dora", project, f"a-long-experiment-name-{uuid.uuid4().hex[:6]}")
        _running(api, token, catalog, f"node-with-a-long-name-{uuid.uuid4().hex[:6]}")
    dev_login(page, live, "admin", f"wide{uuid.uuid4().hex[:6]}", project="ops")
    table = page.locator("#resources table")
    assert table.locator("th", has_text="Project").count() == 1
    widths = page.evaluate("""() => ({page: document.documentElement.scrollWidth, viewport: innerWidth,
        table: document.querySelector('#resources table').scrollWidth,
        box: document.querySelector('#resources .overflow-auto').clientWidth})""")
    assert widths["page"] <= widths["viewport"] and widths["table"] <= widths["box"], widths


def test_create_form_offers_the_fields_of_the_flavor_type(page: Any, live: LiveServer, api: Api,
                                                          catalog: dict[str, str]) -> None:
    microvm_image = api.ok("POST", "/disk-images", api.token("admin"), 201, json={
        "friendly_name": f"alpine-{uuid.uuid4().hex[:6]}", "flavor_type": "microvm",
        "location": "alpine-3.20", "default_username": "root"})["id"]
    dev_login(page, live, "alice", f"form{uuid.uuid4().hex[:6]}")
    page.goto(f"{live.url}/ui/resources/new")
    networks = page.get_by_label(re.compile("^Networks"))
    assert networks.count() == 0  # no type chosen yet: nothing type-specific
    page.get_by_label("Disk image").select_option(catalog["image"])  # a cloud's image: networks apply
    networks.wait_for()
    assert page.get_by_label("Public IPv4 address").is_visible()
    page.get_by_label("Disk image").select_option(microvm_image)
    networks.wait_for(state="detached")
    assert "nothing to choose" in page.locator("#network-fields").inner_text()
    assert page.get_by_label("Public IPv4 address").count() == 0
    assert page.get_by_label("SSH public keys, one per line").is_visible()  # common to every type
