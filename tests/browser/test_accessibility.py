"""Every page passes axe-core's WCAG 2.0/2.1 A and AA rules, run in the real browser.

axe-core (npm, installed by ``.ci/run`` with the other browser-test packages) is injected
into each page as it is served, at laptop and at phone width.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import LAPTOP, NODE_MODULES, PHONE, dev_login, sample_reservation
from tests.conftest import LiveServer, integration_unavailable
from tests.helpers import Api

pytestmark = pytest.mark.browser
AXE = NODE_MODULES / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page: Any, url: str) -> list[dict[str, Any]]:
    """axe-core's findings on ``url``: rule, impact, what it asks, the first elements."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA)
    return [{"rule": v["id"], "impact": v["impact"], "help": v["help"],
             "elements": [n["target"] for n in v["nodes"]][:3]} for v in result["violations"]]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page that may inject axe-core as an inline script (our CSP refuses inline script)."""
    context = browser.new_context(viewport=LAPTOP, bypass_csp=True)
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def test_every_page_meets_wcag_aa(page: Any, browser: Any, live: LiveServer, api: Api,
                                  catalog: dict[str, str]) -> None:
    if not AXE.exists():
        integration_unavailable(f"axe-core is missing (npm install --prefix {NODE_MODULES.parent} $(cat .ci/npm-browser.txt))")
    # the check itself works: a page with an unlabelled field and an image without text fails
    page.set_content('<html lang="en"><title>t</title><main><img src="x.png"><input></main></html>')
    page.add_script_tag(path=str(AXE))
    planted = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
                            ".then(r => r.violations.map(v => v.id))", WCAG_AA)
    assert {"image-alt", "label"} <= set(planted)
    found = {"/ui/login": violations(page, f"{live.url}/ui/login")}
    experiment = f"a11y-{uuid.uuid4().hex[:6]}"
    task = api.create(api.token("admin", "demo", experiment), ["a11y1"], catalog["flavor"], catalog["image"])
    api.wait_task(api.token("admin", "demo", experiment), task["id"])
    rid = task["resource_ids"][0]
    qkd = api.ok("POST", "/qkd-networks", api.token("admin", "demo", experiment), 201, json={
        "name": "a11y", "nodes": [{"name": "alice", "saes": ["a11y-a"]}, {"name": "bob", "saes": ["a11y-b"]}],
        "links": [{"between": ["alice", "bob"]}]})["id"]
    booked = sample_reservation(api, experiment)
    dev_login(page, live, "admin", experiment)  # a site admin: the operator pages too
    for path in ("/ui/", "/ui/resources/new", f"/ui/resources/{rid}", f"/ui/tasks/{task['id']}",
                 f"/ui/resources/{rid}/delete", "/ui/credentials", "/ui/catalog", "/ui/hosts",
                 "/ui/quotas", "/ui/qkd-networks", f"/ui/qkd-networks/{qkd}", f"/ui/qkd-networks/{qkd}/delete",
                 "/ui/reservations", "/ui/reservations/new", f"/ui/reservations/{booked}/cancel"):
        found[path] = violations(page, f"{live.url}{path}")
    page.goto(f"{live.url}/ui/resources/new")
    page.get_by_role("button", name="Create").click()  # nothing chosen: errors beside the fields
    page.add_script_tag(path=str(AXE))
    found["create form with errors"] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}}).then(r => r.violations.map(v => v.id))",
        WCAG_AA)
    phone = browser.new_context(viewport=PHONE, bypass_csp=True)
    try:
        small = phone.new_page()
        dev_login(small, live, "admin", experiment)
        found["/ui/ at phone width"] = violations(small, f"{live.url}/ui/")
        found["/ui/reservations at phone width"] = violations(small, f"{live.url}/ui/reservations")
    finally:
        phone.close()
    assert {where: v for where, v in found.items() if v} == {}
