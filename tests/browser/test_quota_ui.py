"""Quotas in a real browser: an admin sets a project's quota on the Quotas page, its user
sees the usage on the dashboard and the create form refuses going past it."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from slices_blueprint.core.dev_issuer import dev_ids
from tests.browser.conftest import dev_login, menu, shot
from tests.conftest import LiveServer
from tests.helpers import Api

pytestmark = pytest.mark.browser


def test_admin_sets_a_quota_the_user_sees_and_meets(
    page: Any, live: LiveServer, api: Api, catalog: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    project = f"quota-ui-{uuid.uuid4().hex[:6]}"
    token = api.token("quser", project, "qexp")
    api.create(
        token, ["first"], catalog["flavor"], catalog["image"]
    )  # the project is known, 1 instance
    project_id = dev_ids("quser", project, None)["project"]

    dev_login(page, live, "admin", "ops-exp", project="ops")
    menu(page, "Quotas")
    form = page.locator("form", has=page.get_by_role("button", name=f"Save quota of {project_id}"))
    form.get_by_label("Instances", exact=True).fill("1")
    form.get_by_role("button").click()
    assert "Quota of" in page.locator("#messages").inner_text()
    card = page.locator("article", has=page.get_by_role("heading", name=re.compile(project_id)))
    assert card.get_by_label("Instances", exact=True).input_value() == "1"
    shot(page, "quotas-admin")

    page.context.clear_cookies()
    dev_login(page, live, "quser", "qexp", project=project)
    usage = page.locator("article", has=page.get_by_role("heading", name="Quota"))
    row = usage.get_by_role("row", name=re.compile("^Instances 1 1"))
    assert row.count() == 1, usage.inner_text()
    shot(page, "dashboard-quota")
    page.goto(f"{live.url}/ui/resources/new")
    page.get_by_label("Name", exact=True).fill("second")
    page.get_by_label("Disk image").select_option(catalog["image"])
    expect(page.locator("label[for=flavor]")).to_have_text(
        re.compile("those that fit")
    )  # htmx swapped
    page.get_by_label(re.compile("^Flavor")).select_option(catalog["flavor"])
    page.get_by_role("button", name="Create").click()
    assert (
        "instances: 1 used + 1 requested > 1 allowed" in page.locator("#count-error").inner_text()
    )
