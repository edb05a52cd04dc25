"""A real microVM's resource page charts its metrics (a local agent with QEMU under TCG)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from slices_blueprint.hosts.local import start_local_agent
from tests.browser.conftest import dev_login, shot
from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api
from tests.microvm.conftest import require_microvm_host
from tests.microvm.test_service_microvm import enrol, microvm_catalog, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.microvm]


def test_microvm_metrics_charts(page: Any, pg_admin_url: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU, memory and disk charts appear on the resource page and keep updating (htmx)."""
    require_microvm_host()
    monkeypatch.setenv("SLICES_AGENT_HEARTBEAT_SECONDS", "1")
    with fresh_database(pg_admin_url) as url, httpx.Client(timeout=30) as http:
        settings = make_settings(tmp_path / "svc", url, free_port())
        server = start_server(settings, url)
        api = Api(server, http)
        admin = api.token("admin")
        # (the enrolment serve would mint, asked of the API: Playwright's loop runs here)
        agent = start_local_agent(settings, enrol(http, server.url, admin, "local"))
        try:
            wait_for(lambda: any(h["name"] == "local" for h in http.get(
                f"{server.url}/api/v1/hosts", headers={"Authorization": f"Bearer {admin}"}).json()),
                30, "the local host registering")
            flavor, image = microvm_catalog(api, admin)
            experiment = "charts"
            token = api.token("carol", "demo", experiment)
            task = api.create(token, ["vm-charts"], flavor, image)
            assert api.wait_task(token, task["id"], timeout=240)["status"] == "succeeded"
            (rid,) = task["resource_ids"]

            dev_login(page, server, "carol", experiment)
            page.goto(f"{server.url}/ui/resources/{rid}")
            cpu = page.get_by_role("img", name=re.compile(r"^CPU: now used [0-9.]+ %"))
            cpu.wait_for(timeout=60_000)
            page.evaluate("window.__noReload = 'resource'")
            for title in ("Memory", "Disk"):
                assert page.get_by_role("img", name=re.compile(f"^{title}: now")).count() == 1
            memory = page.locator("figcaption", has_text="Memory").inner_text()
            assert float(re.search(r"resident ([0-9.]+)", memory).group(1)) > 20
            first = page.locator("polyline[data-series=used]").get_attribute("points")
            # the next poll (every 15 s) brings new points without reloading the page
            wait_for(lambda: page.locator("polyline[data-series=used]").get_attribute("points") != first,
                     40, "the CPU chart updating")
            assert page.evaluate("window.__noReload") == "resource"
            page.locator("#metrics-heading").scroll_into_view_if_needed()
            shot(page, "metrics")

            # operators see what runs where: the hosts page lists the VM under its host
            dev_login(page, server, "admin", experiment)
            page.goto(f"{server.url}/ui/hosts")
            page.locator("td details summary").first.click()  # the host's VM count opens its list
            page.get_by_role("link", name="vm-charts").click()
            page.wait_for_url(f"{server.url}/ui/resources/{rid}")
            api.wait_task(token, api.ok("DELETE", f"/resources/{rid}", token, 202)["id"], timeout=60)
        finally:
            agent.terminate()
            agent.wait(10)
            server.stop()
