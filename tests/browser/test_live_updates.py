"""Pages follow changes made elsewhere (the API, another replica, a job) without a reload,
pushed by server-sent events fed by PostgreSQL NOTIFY, and a page hears of nothing it may
not see."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.browser.conftest import dev_login
from tests.conftest import LiveServer
from tests.helpers import Api, wait_for

pytestmark = pytest.mark.browser
COUNT_MESSAGES = ("window.__sse = 0; document.addEventListener('htmx:sseMessage', "
                  "() => { window.__sse += 1; })")
"""Counts the events a page's stream delivers (an init script: from before the page's own)."""


def _running(api: Api, token: str, catalog: dict[str, str], name: str) -> str:
    task = api.create(token, [name], catalog["flavor"], catalog["image"])
    api.wait_task(token, task["id"])
    return task["resource_ids"][0]


def _expect_status(page: Any, locator: str, status: str, timeout_ms: float) -> float:
    """Seconds until ``locator`` shows ``status`` (fails past ``timeout_ms``)."""
    from playwright.sync_api import expect

    start = time.monotonic()
    expect(page.locator(locator)).to_have_text(re.compile(f"^{status}$"), timeout=timeout_ms)
    return time.monotonic() - start


def _messages(page: Any) -> int:
    return page.evaluate("window.__sse")


def _connected(page: Any) -> None:
    """The page's stream is open: its first event (sent at once) arrived."""
    wait_for(lambda: _messages(page) >= 1, 10, "the page's event stream opening")


def test_pause_from_the_api_shows_without_reload(page: Any, live: LiveServer, api: Api, catalog: dict[str, str]) -> None:
    """A resource page and the dashboard, open, show a pause made through the API within 2 s
    of the change, and neither page reloads or polls."""
    experiment = f"live{uuid.uuid4().hex[:6]}"
    token = api.token("alice", "demo", experiment)
    rid = _running(api, token, catalog, "watched")
    dev_login(page, live, "alice", experiment)
    page.add_init_script(COUNT_MESSAGES)
    page.goto(f"{live.url}/ui/resources/{rid}")
    page.evaluate("window.__noReload = 1")
    _connected(page)  # (its first event fetches the details once: what changed since rendering)
    fragments: list[str] = []
    page.on("request", lambda r: fragments.append(r.url) if "/fragments/" in r.url else None)
    time.sleep(3)  # what polling every 2 s would have fetched by now
    assert fragments == [], "the page polled"

    task = api.ok("POST", f"/resources/{rid}/pause", token, 202)
    api.wait_task(token, task["id"])  # paused now: the page must show it within 2 s
    assert _expect_status(page, "#status [data-status]", "paused", 2_000) < 2
    assert page.evaluate("window.__noReload") == 1, "the page reloaded"

    page.goto(f"{live.url}/ui/")
    page.evaluate("window.__noReload = 1")
    _connected(page)
    task = api.ok("POST", f"/resources/{rid}/resume", token, 202)
    api.wait_task(token, task["id"])
    assert _expect_status(page, "#row-watched [data-status]", "running", 2_000) < 2
    assert page.evaluate("window.__noReload") == 1


def test_other_experiments_changes_are_not_delivered(page: Any, live: LiveServer, api: Api,
                                                     catalog: dict[str, str]) -> None:
    """A resource page hears nothing of another resource; a dashboard hears nothing of another
    project; and no stream opens for a resource the viewer may not see."""
    mine, theirs = f"mine{uuid.uuid4().hex[:6]}", f"theirs{uuid.uuid4().hex[:6]}"
    my_token, their_token = api.token("bob", "lab-b", mine), api.token("carol", "lab-c", theirs)
    my_rid = _running(api, my_token, catalog, "bobs")
    their_rid = _running(api, their_token, catalog, "carols")
    dev_login(page, live, "bob", mine, project="lab-b")
    page.add_init_script(COUNT_MESSAGES)

    for where, mine_then in ((f"/ui/resources/{my_rid}", "pause"), ("/ui/", "resume")):
        page.goto(f"{live.url}{where}")
        _connected(page)
        before = _messages(page)
        for action in ("pause", "resume"):  # two committed changes of another project's resource
            api.wait_task(their_token, api.ok("POST", f"/resources/{their_rid}/{action}", their_token, 202)["id"])
        time.sleep(1)
        assert _messages(page) == before, f"{where} heard of another project's resource"
        api.ok("POST", f"/resources/{my_rid}/{mine_then}", my_token, 202)  # one of mine: heard
        wait_for(lambda seen=before: _messages(page) > seen, 5, f"{where} hearing of the viewer's own resource")

    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=live.url, cookies=cookies, timeout=10) as http:
        refused = http.get(f"/ui/live/resources/{their_rid}", headers={"Accept": "text/event-stream"})
        assert refused.status_code == 404 and "text/event-stream" not in refused.headers.get("content-type", "")
        hub = live.server.config.app.state.changes
        open_before = set(hub.subscriptions)  # (the page's own, which may reconnect meanwhile)
        with http.stream("GET", f"/ui/live/resources/{my_rid}") as own:
            assert own.status_code == 200 and own.headers["content-type"].startswith("text/event-stream")
            assert next(own.iter_lines()) == "event: changed"
            opened = set(hub.subscriptions) - open_before
            assert len(opened) == 1
        wait_for(lambda: not opened & set(hub.subscriptions), 5, "a closed stream leaving its subscription")
