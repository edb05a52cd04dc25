"""QKD networks in the UI, in a real browser (Debian's chromium) against the running service:
create from the form, watch the drawing and the charts update live, stop a link with an
eavesdropper, refused descriptions, credentials once, delete; another experiment's: 404."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.browser.conftest import PHONE, dev_login, shot
from tests.conftest import LiveServer
from tests.helpers import Api

pytestmark = pytest.mark.browser
DESCRIPTION = """name: {name}
nodes:
  - name: alice
    saes: [{name}-a]
  - name: bob
    saes: [{name}-b]
links:
  - between: [alice, bob]
    length_km: 20
"""


def _expect_text(locator: Any, pattern: str, timeout: float = 30_000) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_text(re.compile(pattern), timeout=timeout)


def _points(page: Any, chart: str) -> int:
    polyline = page.locator(f'[data-chart="{chart}"] polyline')
    return len(polyline.get_attribute("points").split()) if polyline.count() else 0


def test_network_is_drawn_and_follows_its_links_live(page: Any, live: LiveServer, api: Api) -> None:
    """Create a network from pasted YAML, see two nodes and a generating link, put an
    eavesdropper on it and see it stop (with the QBER reason, in words) and the charts grow,
    all without a reload."""
    experiment = f"qkdui{uuid.uuid4().hex[:6]}"
    name = f"net-{uuid.uuid4().hex[:6]}"
    dev_login(page, live, "alice", experiment)
    page.get_by_role("link", name="QKD networks").click()
    page.wait_for_url(f"{live.url}/ui/qkd-networks")
    page.get_by_label(re.compile("^Description")).fill(DESCRIPTION.format(name=name))
    page.get_by_role("button", name="Create network").click()
    page.wait_for_url(re.compile(r".*/ui/qkd-networks/qkdnet_.*"))
    page.evaluate("window.__noReload = 'network'")

    drawing = page.locator("svg.qkd-drawing")
    assert drawing.locator("[data-node]").count() == 2
    assert "https://127.0.0.1:" in drawing.locator('[data-node="alice"]').inner_html()
    assert f"{name}-a" in drawing.locator('[data-node="alice"]').inner_html()
    link = drawing.locator('[data-link="alice-bob"]')
    assert link.get_attribute("data-state") == "generating"
    assert "generating" in link.locator("text").text_content()
    _expect_text(page.locator("#link-alice-bob-state"), "^generating$")
    page.wait_for_function(  # the sampler (every 5 s) and the 2 s poll: the charts fill
        "() => (document.querySelector('[data-chart=\"alice-bob-stored\"] polyline')"
        "?.getAttribute('points').split(' ').length ?? 0) >= 2", timeout=30_000)
    before = _points(page, "alice-bob-stored")
    shot(page, "qkd-network")

    page.get_by_label("Eavesdropper on alice-bob (slider)").fill("0.6")  # the slider fills the number
    assert page.get_by_label(re.compile(r"^Eavesdropper \(fraction")).input_value() == "0.6"
    page.get_by_role("button", name="Apply to alice-bob").click()
    _expect_text(page.locator("#note-alice-bob"), "now stopped: QBER")
    _expect_text(page.locator("#link-alice-bob-state"), r"^stopped\s*QBER 0\.\d+ above the BB84 threshold", 10_000)
    assert link.get_attribute("data-state") == "stopped"
    assert "QBER" in link.locator("title").text_content()  # the reason, as the tooltip
    assert "stopped" in link.locator("text").text_content()  # in words on the drawing, not colour only
    page.wait_for_function(
        "n => document.querySelector('[data-chart=\"alice-bob-stored\"] polyline')"
        ".getAttribute('points').split(' ').length > n", arg=before, timeout=20_000)
    assert "threshold 11.0" in page.locator('[data-chart="alice-bob-qber"] figcaption').inner_text()
    assert page.evaluate("window.__noReload") == "network", "the page reloaded instead of polling"
    shot(page, "qkd-network-stopped")

    page.get_by_role("button", name="Take credentials (once only)").first.click()
    assert "Shown once only" in page.locator("[role=alert]").inner_text()
    assert "BEGIN PRIVATE KEY" in page.get_by_label("Private key (sae.key)").input_value()
    page.go_back()
    page.reload()
    assert "taken already" in page.locator(f"#sae-{name}-a").inner_text()

    page.goto(f"{live.url}/ui/qkd-networks")
    assert "1 stopped" in page.locator(f"#network-{name}").inner_text()
    network_url = page.locator(f"#network-{name} a").get_attribute("href")
    other = f"qkdother{uuid.uuid4().hex[:6]}"
    stranger = page.context.browser.new_context()
    try:  # another experiment's user: no such network
        intruder = stranger.new_page()
        dev_login(intruder, live, "mallory", other, project="elsewhere")
        assert intruder.goto(f"{live.url}{network_url}").status == 404
    finally:
        stranger.close()

    page.goto(f"{live.url}{network_url}")
    page.get_by_role("button", name="Delete…").click()
    page.wait_for_url(re.compile(r".*/delete$"))
    page.get_by_role("button", name=f"Yes, delete {name}").click()
    page.wait_for_url(f"{live.url}/ui/qkd-networks")
    assert f"Deleted QKD network {name}" in page.locator("#messages").inner_text()
    assert page.locator(f"#network-{name}").count() == 0


def test_refused_description_keeps_the_text(page: Any, live: LiveServer) -> None:
    """Bad YAML, and a description the model refuses: the error beside the field, the text kept."""
    dev_login(page, live, "alice", f"qkdui{uuid.uuid4().hex[:6]}")
    page.goto(f"{live.url}/ui/qkd-networks")
    field = page.get_by_label(re.compile("^Description"))
    broken = "name: broken\nnodes: [alice\n  - bob"
    field.fill(broken)
    page.get_by_role("button", name="Create network").click()
    assert field.get_attribute("aria-invalid") == "true"
    assert "not valid YAML or JSON at line" in page.locator("#description-error").inner_text()
    assert field.input_value() == broken
    shot(page, "qkd-create-error")

    refused = '{"name": "lonely", "nodes": [{"name": "alice"}, {"name": "bob"}], "links": [{"between": ["alice", "carol"]}]}'
    field.fill(refused)
    page.get_by_role("button", name="Create network").click()
    assert "no node named 'carol'" in page.locator("#description-error").inner_text()
    assert field.input_value() == refused


def test_phone_width(browser: Any, live: LiveServer, api: Api) -> None:
    """The menu, the list and a network's page fit a phone's width (no sideways scrolling)."""
    experiment = f"qkdui{uuid.uuid4().hex[:6]}"
    network = api.ok("POST", "/qkd-networks", api.token("alice", "demo", experiment), 201,
                     json={"name": "phone", "nodes": [{"name": "alice"}, {"name": "bob"}, {"name": "carol"}],
                           "links": [{"between": ["alice", "bob"]}, {"between": ["bob", "carol"]}]})
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        dev_login(page, live, "alice", experiment)
        for path in ("/ui/", "/ui/qkd-networks", f"/ui/qkd-networks/{network['id']}"):
            page.goto(f"{live.url}{path}")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
        shot(page, "qkd-phone")
    finally:
        context.close()
