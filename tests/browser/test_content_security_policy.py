"""Low finding: security headers. In the real browser, every page works under our
Content-Security-Policy (no violation reported), a script injected into a page is refused,
and the API docs load only our own files (no CDN)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import dev_login, sample_reservation
from tests.conftest import LiveServer
from tests.helpers import Api

pytestmark = pytest.mark.browser
INJECTED = "const s = document.createElement('script'); s.textContent = 'window.__pwned = 1'; document.body.append(s)"


def csp_violations(page: Any) -> list[str]:
    """Collects the browser's CSP reports for ``page`` (the list fills as pages load)."""
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if "Content Security Policy" in m.text else None)
    return found


def test_pages_work_under_the_csp_and_injected_script_is_refused(page: Any, live: LiveServer, api: Api,
                                                                  catalog: dict[str, str]) -> None:
    violations = csp_violations(page)
    experiment = f"csp-{uuid.uuid4().hex[:6]}"
    token = api.token("admin", "demo", experiment)
    task = api.create(token, ["csp1"], catalog["flavor"], catalog["image"])
    api.wait_task(token, task["id"])
    qkd = api.ok("POST", "/qkd-networks", token, 201, json={
        "name": "csp", "nodes": [{"name": "alice"}, {"name": "bob"}], "links": [{"between": ["alice", "bob"]}]})["id"]
    booked = sample_reservation(api, experiment)
    dev_login(page, live, "admin", experiment)
    for path in ("/ui/", "/ui/resources/new", f"/ui/resources/{task['resource_ids'][0]}",
                 f"/ui/tasks/{task['id']}", "/ui/catalog", "/ui/hosts", "/ui/credentials",
                 "/ui/qkd-networks", f"/ui/qkd-networks/{qkd}", "/ui/reservations", "/ui/reservations/new",
                 f"/ui/reservations/{booked}/cancel"):
        page.goto(f"{live.url}{path}")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof htmx") == "object", f"htmx did not load on {path}"
    page.goto(f"{live.url}/ui/")
    page.evaluate(INJECTED)
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None, "an injected inline script ran"
    assert any("inline script" in v for v in violations), violations  # refused by the CSP
    assert [v for v in violations if "inline script" not in v] == []


def test_api_docs_load_only_our_own_files(page: Any, live: LiveServer) -> None:
    violations = csp_violations(page)
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
    page.goto(f"{live.url}/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "slices-blueprint" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock").first.wait_for()
    assert hosts == {urlsplit(live.url).netloc}, hosts
    assert violations == []
