"""The web UI in a real browser (Debian's chromium), against the running service."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.browser.conftest import PHONE, dev_login, menu, shot
from tests.conftest import LiveServer, integration_unavailable
from tests.helpers import Api, some_certificate

pytestmark = pytest.mark.browser
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevKeyForTheUiTestsOnlyxxxxxxxxxxxxxxxxxx alice@laptop"
OPENSTACK_AIO = Path("/var/lib/openstack-aio/clouds.yaml")


def _experiment() -> str:
    return f"ui{uuid.uuid4().hex[:8]}"


def _expect_text(locator: Any, pattern: str, timeout: float = 30_000) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_text(re.compile(pattern), timeout=timeout)


def _choose(page: Any, image: str, flavor: str | None = None) -> None:
    """Pick an image, wait for the flavor picker to show what fits it, pick a flavor."""
    page.get_by_label("Disk image").select_option(image)
    _expect_text(page.locator("label[for=flavor]"), "those that fit")  # the htmx swap happened
    if flavor:
        page.get_by_label(re.compile("^Flavor")).select_option(flavor)


def test_login_is_required(page: Any, live: LiveServer) -> None:
    """An anonymous visitor is sent to the login page (dev login offered in dev mode)."""
    page.goto(f"{live.url}/")
    page.wait_for_url(re.compile(r".*/ui/login\?next=.*"))
    assert page.get_by_role("button", name="Log in (dev)").is_visible()
    shot(page, "login")


def test_create_watch_extend_delete(page: Any, live: LiveServer, catalog: dict[str, str]) -> None:
    """Dev login, create a resource with the form, watch it reach running on the dashboard
    without a reload, extend it, stop it after confirming and start it, delete it after
    confirming."""
    dev_login(page, live, "alice", _experiment(), ssh_key=SSH_KEY)
    page.get_by_role("link", name="New", exact=True).click()
    page.wait_for_url(f"{live.url}/ui/resources/new")

    _choose(page, catalog["image"])
    flavor = page.get_by_label(re.compile("^Flavor"))
    offered = flavor.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert catalog["flavor"] in offered and catalog["tiny"] not in offered  # 128 MiB < image's 256
    flavor.select_option(catalog["flavor"])
    page.get_by_label("Name", exact=True).fill("web1")
    page.get_by_text("Provider options").click()
    page.get_by_label(re.compile("Provider-specific options")).fill('{"delay_s": 4}')
    shot(page, "create")
    page.get_by_role("button", name="Create").click()

    page.wait_for_url(re.compile(r".*/ui/tasks/task_.*"))
    _expect_text(page.locator("#task-status"), "running|succeeded")
    shot(page, "task")
    _expect_text(page.locator("#task-status"), "^succeeded$")  # the page follows the task by itself
    assert page.locator("#task-progress progress").get_attribute("value") == "100"
    page.goto(f"{live.url}/ui/")
    page.evaluate("window.__noReload = 'dashboard'")
    status = page.locator("#row-web1 [data-status]")
    _expect_text(status, "^running$")
    assert page.evaluate("window.__noReload") == "dashboard", "the dashboard reloaded instead of polling"
    assert "ssh debian@198.51.100." in page.locator("#row-web1").inner_text()
    shot(page, "dashboard")

    page.get_by_role("link", name="web1").click()
    resource_url = page.url
    logs = page.request.get(resource_url.replace("/ui/resources/", "/ui/fragments/resources/") + "/logs")
    assert logs.ok and "web1 booted" in logs.text()  # the test double's console log
    assert "in 23 h" in page.locator("#expires").inner_text()
    assert page.locator("#ssh-command").inner_text().startswith("ssh debian@")
    page.get_by_label("Extend by").select_option("72")
    page.get_by_role("button", name="Extend").click()  # htmx, with the CSRF header
    _expect_text(page.locator("#expires"), r"in 2 d 23 h|in 3 d")
    _expect_text(page.locator("#messages"), "Expires")
    shot(page, "resource")

    page.get_by_role("button", name="Stop…").click()  # it loses what is in memory: asked first
    page.wait_for_url(re.compile(r".*/stop$"))
    assert "Its disk is kept" in page.locator("article").inner_text()
    page.get_by_role("button", name="Yes, stop web1").click()
    _expect_text(page.locator("#status [data-status]"), "^stopped$")
    assert page.get_by_role("button", name="Pause").count() == 0
    page.get_by_role("button", name="Start").click()  # nothing lost: no question
    _expect_text(page.locator("#status [data-status]"), "^running$")

    page.get_by_role("button", name="Delete…").click()
    page.wait_for_url(re.compile(r".*/delete$"))
    shot(page, "confirm-delete")
    page.get_by_role("button", name="Yes, delete web1").click()
    _expect_text(page.locator("#status [data-status]"), "^(deleting|deleted)$")
    _expect_text(page.locator("#status [data-status]"), "^deleted$")
    assert "resource.delete" in page.locator("table").last.inner_text()


def test_failure_reason_is_shown(page: Any, live: LiveServer, catalog: dict[str, str]) -> None:
    """A resource the provider refuses shows the provider's reason, on the task and the dashboard."""
    dev_login(page, live, "alice", _experiment())
    page.goto(f"{live.url}/ui/resources/new")
    _choose(page, catalog["image"], catalog["flavor"])
    name = f"doomed-{uuid.uuid4().hex[:6]}"  # the dashboard shows the project's other experiments too
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_text("Provider options").click()
    page.get_by_label(re.compile("Provider-specific options")).fill('{"fail": "no capacity left in zone b"}')
    page.get_by_role("button", name="Create").click()
    _expect_text(page.locator("#task-status"), "^failed$")
    _expect_text(page.locator("#task-progress"), "no capacity left in zone b")  # the swap may lag the status
    page.get_by_role("link", name="Back to the dashboard").click()
    _expect_text(page.locator(f"#row-{name}"), "error[\\s\\S]*no capacity left in zone b")


def test_form_errors_next_to_fields(page: Any, live: LiveServer, catalog: dict[str, str]) -> None:
    """A rejected form comes back as sent, each error next to its field."""
    dev_login(page, live, "alice", _experiment())
    page.goto(f"{live.url}/ui/resources/new")
    page.get_by_label("Name", exact=True).fill("Bad_Name")
    page.get_by_label("How many").fill("0")
    page.get_by_role("button", name="Create").click()
    assert page.get_by_label("How many").get_attribute("aria-invalid") == "true"
    assert "whole number" in page.locator("#count-error").inner_text()

    page.get_by_label("How many").fill("1")
    _choose(page, catalog["image"])
    page.get_by_role("button", name="Create").click()
    assert page.get_by_label("Name", exact=True).get_attribute("aria-invalid") == "true"
    assert "lower-case" in page.locator("#name-error").inner_text()
    assert page.get_by_label("Name", exact=True).input_value() == "Bad_Name"  # kept as typed

    page.get_by_label("Name", exact=True).fill("good")
    page.get_by_label(re.compile("^Flavor")).select_option("")
    page.get_by_role("button", name="Create").click()
    assert "choose a flavor" in page.locator("#flavor-error").inner_text()
    shot(page, "create-errors")

    page.get_by_label(re.compile("^Flavor")).select_option(catalog["flavor"])
    page.get_by_label(re.compile("^Lifetime in hours")).fill("100000")  # beyond the experiment's expiry
    page.get_by_role("button", name="Create").click()
    assert "must not exceed the experiment's expiry" in page.locator("#duration_hours-error").inner_text()
    page.get_by_label(re.compile("^Lifetime in hours")).fill("2")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r".*/ui/tasks/task_.*"))


def test_csrf_refused(page: Any, live: LiveServer, catalog: dict[str, str]) -> None:
    """A POST without (or with a wrong) CSRF token is refused, logged in or not."""
    dev_login(page, live, "alice", _experiment())
    form = {"image": catalog["image"], "flavor": catalog["flavor"], "name": "csrf1"}
    refused = page.request.post(f"{live.url}/ui/resources", form=form)
    assert refused.status == 403 and "CSRF" in refused.text()
    refused = page.request.post(f"{live.url}/ui/resources", form=form | {"csrf_token": "forged"})
    assert refused.status == 403
    refused = page.request.post(f"{live.url}/ui/logout", headers={"X-CSRF-Token": "forged"})
    assert refused.status == 403
    page.goto(f"{live.url}/ui/")
    assert "csrf1" not in page.locator("#resources").inner_text()


def test_paste_experiment_token(page: Any, live: LiveServer, api: Api) -> None:
    """Switch experiments by pasting a token (as from ``slices experiment jwt``); a user token is refused."""
    dev_login(page, live, "erin", _experiment())
    page.get_by_role("button", name="Use another experiment").click()
    page.get_by_label("Experiment token").fill(api.token("erin", "demo"))
    page.get_by_role("button", name="Use this experiment").click()
    assert "not a user token" in page.locator("main").inner_text()
    page.goto(f"{live.url}/ui/")
    page.get_by_label("Experiment token").fill(api.token("erin", "demo", "pasted"))
    page.get_by_role("button", name="Use this experiment").click()
    _expect_text(page.locator("#messages"), "Using experiment pasted")
    page.get_by_role("link", name="New", exact=True).click()
    assert "In experiment pasted" in page.locator("main").inner_text()


def test_bad_credential_shows_error(page: Any, live: LiveServer) -> None:
    """An unusable clouds.yaml is refused with the provider's reason, next to the field."""
    dev_login(page, live, "carol", _experiment())
    menu(page, "Credentials")
    card = page.locator("#credential-openstack")
    card.get_by_label("Upload a file").set_input_files(
        files=[{"name": "clouds.yaml", "mimeType": "text/yaml", "buffer": b"clouds: [not, a, mapping"}])
    card.get_by_role("button", name="Check and store").click()
    error = page.locator("#openstack-error")
    assert "does not work" in error.inner_text()
    assert page.locator("#credential-openstack").get_by_text("None stored").is_visible()
    # this site has no OpenStack cloud of its own: the page does not say one is used
    assert "this site has no cloud of its own" in card.inner_text() and "site's own" not in card.inner_text()
    shot(page, "credentials-error")


def _reachable(url: str) -> bool:
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=3):
            return True
    except OSError:
        return False


def test_good_credential_is_stored(page: Any, live: LiveServer) -> None:
    """The OpenStack AIO's clouds.yaml passes the provider's check and is stored (not shown);
    the admin who stored it imports that cloud's catalog."""
    if not OPENSTACK_AIO.exists():
        integration_unavailable(f"no OpenStack AIO credentials at {OPENSTACK_AIO}")
    content = OPENSTACK_AIO.read_bytes()
    auth_url = next(iter(yaml.safe_load(content)["clouds"].values()))["auth"]["auth_url"]
    if not _reachable(auth_url):
        integration_unavailable(f"the OpenStack AIO at {auth_url} is not running")
    dev_login(page, live, "admin", _experiment(), project="ops")
    page.goto(f"{live.url}/ui/credentials")
    card = page.locator("#credential-openstack")
    card.get_by_label("Upload a file").set_input_files(
        files=[{"name": "clouds.yaml", "mimeType": "text/yaml", "buffer": content}])
    card.get_by_role("button", name="Check and store").click()
    _expect_text(page.locator("#messages"), "checked and stored")
    assert "works" in page.locator("#credential-openstack").inner_text()
    assert "password" not in page.content()
    shot(page, "credentials")

    menu(page, "Catalog")  # an admin imports the cloud's catalog with that credential
    page.get_by_label("Provider").select_option("vm")
    page.get_by_role("button", name="Sync now").click()
    _expect_text(page.locator("#messages"), r"Synced vm \(.*\): \d+ added")
    assert page.locator("tr", has_text="vm").count() > 0


def test_operator_pages(page: Any, live: LiveServer, catalog: dict[str, str], api: Api) -> None:
    """The site admin sees every project's resources, hides catalog entries, sees hosts."""
    exp = api.token("bob", "other", "exp1")
    flavor, image = catalog["flavor"], catalog["image"]
    api.wait_task(exp, api.create(exp, [f"bob{uuid.uuid4().hex[:4]}"], flavor, image)["id"])
    dev_login(page, live, "admin", _experiment(), project="ops")
    assert "every project" in page.content()
    _expect_text(page.locator("#resources"), "bob")
    shot(page, "operator-dashboard")

    menu(page, "Catalog")
    row = page.locator("tr", has_text="td.tiny-ui")
    row.get_by_role("button", name="Hide").click()
    _expect_text(page.locator("#messages"), "td.tiny-ui is now hidden")
    row.get_by_role("button", name="Show").click()
    _expect_text(page.locator("#messages"), "td.tiny-ui is now shown")
    shot(page, "catalog")
    page.get_by_label("Provider").select_option("k8s")  # no site cluster, no kubeconfig of the admin's
    page.get_by_role("button", name="Sync now").click()
    assert "catalog sync failed" in page.locator("main").inner_text()



def test_hosts_page(page: Any, live: LiveServer, api: Api, tmp_path: Path) -> None:
    """Operators see the microVM hosts with their capacity, drain one and activate it again."""
    name = f"kvm-{uuid.uuid4().hex[:4]}"
    api.http.post(f"{live.url}/api/v1/hosts/register", headers={"Authorization": f"Bearer {api.token('admin')}"}, json={
        "name": name, "url": f"https://{name}.invalid:8700", "token": "t" * 32, "vcpus": 16, "vcpus_used": 4,
        "cert_pem": some_certificate(tmp_path),
        "memory_mib": 65536, "memory_used_mib": 8192, "disk_free_mib": 200000, "vms_running": 2,
    }).raise_for_status()
    dev_login(page, live, "admin", _experiment(), project="ops")
    menu(page, "Hosts")
    row = page.locator("tr", has_text=name)
    assert "4 / 16" in row.inner_text() and "8192 / 65536 MiB" in row.inner_text()
    shot(page, "hosts")
    row.get_by_role("button", name="Drain").click()
    _expect_text(page.locator("#messages"), f"{name} is now draining")
    row.get_by_role("button", name="Activate").click()
    _expect_text(page.locator("#messages"), f"{name} is now active")


def test_phone_width(browser: Any, live: LiveServer, catalog: dict[str, str]) -> None:
    """The dashboard and the create form fit a phone's width (no sideways scrolling)."""
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        dev_login(page, live, "alice", _experiment())
        for path, name in (("/ui/", "phone-dashboard"), ("/ui/resources/new", "phone-create"), ("/ui/catalog", None), ("/ui/credentials", None)):
            page.goto(f"{live.url}{path}")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
            if name:
                shot(page, name)
    finally:
        context.close()
