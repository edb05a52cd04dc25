"""Low finding: a web session ends server-side at logout. The attack: a cookie copied while
the user was logged in (from a shared machine, a proxy log) is replayed after the logout."""

from __future__ import annotations

import re

import httpx

from slices_blueprint.web.session import COOKIE
from tests.conftest import LiveServer


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_a_copied_cookie_dies_with_the_logout(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as user:
        login_page = user.get("/ui/login")
        logged_in = user.post("/ui/login/dev", data={"csrf_token": csrf_of(login_page), "user": "carol",
                                                     "project": "demo", "experiment": "exp1"})
        assert logged_in.status_code == 303
        copied = user.cookies[COOKIE]
        dashboard = user.get("/ui/")
        assert dashboard.status_code == 200 and "carol" in dashboard.text
        assert user.post("/ui/logout", data={"csrf_token": csrf_of(dashboard)}).status_code == 303

    with httpx.Client(base_url=live.url, cookies={COOKIE: copied}) as attacker:
        replayed = attacker.get("/ui/")
        assert replayed.status_code in (303, 307) and "/ui/login" in replayed.headers["location"]
        assert "carol" not in replayed.text
