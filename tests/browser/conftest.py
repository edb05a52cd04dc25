"""Browser fixtures: Debian's chromium driven by Playwright against the live service.

Screenshots go to ``docs/screenshots/`` (USER.md shows them). Without chromium or the
``playwright`` package the tests skip with the reason (and fail when
``SLICES_BLUEPRINT_REQUIRE_INTEGRATION=1``).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slices_blueprint.core.deps import API_PREFIX
from tests.conftest import LiveServer, integration_unavailable
from tests.helpers import Api

CHROMIUM = os.environ.get("SLICES_BLUEPRINT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NODE_MODULES = Path(os.environ.get("SLICES_BLUEPRINT_NPM_PREFIX", "/opt/slices-blueprint-npm")) / "node_modules"
"""Where ``.ci/run`` installs the npm packages of ``.ci/npm-browser.txt``."""
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """A headless chromium for this package's tests. Playwright's sync API runs an event loop
    in this thread while it is open, so it must close before other packages' tests run."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        integration_unavailable("the playwright Python package is not installed")
    if not Path(CHROMIUM).exists():
        integration_unavailable(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) at laptop size."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def api(live: LiveServer) -> Iterator[Api]:
    with httpx.Client(timeout=30) as http:
        yield Api(live, http)


@pytest.fixture(scope="session")
def catalog(api: Api) -> dict[str, str]:
    """A test-double flavor and image, and a second flavor too small for the image."""
    flavor, image = api.test_double_catalog("ui")
    tiny = api.ok("POST", "/flavors", api.token("admin"), 201, json={
        "friendly_name": "td.tiny-ui", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 128, "disk_mb": 512})
    return {"flavor": flavor, "image": image, "tiny": tiny["id"]}


def shot(page: Any, name: str, full_page: bool = True) -> None:
    """Save a screenshot for USER.md."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def dev_login(page: Any, live: LiveServer, user: str, experiment: str, project: str = "demo", ssh_key: str = "") -> None:
    """Log in through the dev-mode login form."""
    page.goto(f"{live.url}/ui/login")
    page.get_by_label("User").fill(user)
    page.get_by_label("Project").fill(project)
    page.get_by_label("Experiment").fill(experiment)
    if ssh_key:
        page.get_by_label("SSH public key").fill(ssh_key)
    page.get_by_role("button", name="Log in (dev)").click()
    page.wait_for_url(f"{live.url}/ui/")


def menu(page: Any, item: str) -> None:
    """Follow an entry of the user menu (Catalog, Credentials, Hosts, Log out)."""
    page.locator("nav details.dropdown summary").click()
    page.locator("nav details.dropdown").get_by_role("link", name=item).click()


def own(api: Api, method: str, path: str, token: str, status: int = 200, **kwargs: Any) -> Any:
    """A call to our own API (``/api/v1``: equipment, reservations)."""
    response = api.http.request(method, f"{api.live.url}{API_PREFIX}{path}",
                                headers={"Authorization": f"Bearer {token}"}, **kwargs)
    assert response.status_code == status, response.text
    return response.json()


def sample_reservation(api: Api, experiment: str) -> str:
    """An item registered by the admin and reserved tomorrow for the admin's ``experiment``: its id."""
    name = f"fpga-{uuid.uuid4().hex[:6]}"
    own(api, "POST", "/equipment", api.token("admin"), 201, json={"kind": "fpga", "name": name})
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    return own(api, "POST", "/reservations", api.token("admin", "demo", experiment), 201,
               json={"equipment": [name], "starts_at": start.isoformat(), "hours": 2})["id"]
