"""Web UI pieces without a browser: PKCE, the session cookie, CSRF, form error mapping."""

from __future__ import annotations

import time

import httpx
import pytest

from slices_blueprint.web.forms import CreateForm, FieldErrors, message_field
from slices_blueprint.web.oidc import s256
from slices_blueprint.web.session import COOKIE, WebSession, encode
from tests.conftest import LiveServer


def test_pkce_challenge_is_unpadded_base64url_sha256() -> None:
    # expected value from Node's crypto: createHash("sha256").update(v).digest("base64url")
    assert s256("dBjftJeZ4CVP-mJ92K9qm4Bj-ltSy-E2nRxZe3w2lBo") == "NLaRVG7PvFOl5EyvqsURUnsci6sdKBJpCGfWmFZdoGU"


def test_api_messages_land_next_to_their_field() -> None:
    assert message_field("resources.0.flavor_id: no such flavor") == ("flavor", "no such flavor")
    assert message_field("resources.0: image x is for vm, flavor y is k8s") == ("flavor", "image x is for vm, flavor y is k8s")
    assert message_field("expires_at: must not exceed the experiment's expiry") == ("duration_hours", "must not exceed the experiment's expiry")
    assert message_field("something else: entirely") == ("form", "something else: entirely")


def test_count_names_the_resources() -> None:
    form = CreateForm(image="image_x", flavor="flavor_x", name="node", count="3", networks="lab, mgmt", options='{"a": 1}')
    request = form.to_request()
    assert [r.friendly_name for r in request.resources] == ["node-1", "node-2", "node-3"]
    assert request.resources[0].network_names() == ["lab", "mgmt"] and request.resources[0].request_config == {"a": 1}


def test_every_bad_field_is_reported_at_once() -> None:
    form = CreateForm(name="Bad_Name", count="0", duration_hours="-1", options="[1]", ssh_keys="not a key")
    with pytest.raises(FieldErrors) as caught:
        form.to_request()
    assert set(caught.value.errors) == {"image", "flavor", "name", "count", "duration_hours", "options", "ssh_keys"}


def test_session_cookie_is_encrypted_httponly_lax(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        login = client.get("/ui/login")
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
        assert "Secure" not in cookie  # the test server is plain http on loopback
        value = client.cookies[COOKIE]
        assert "csrf" not in value  # encrypted, not merely signed
        client.cookies.set(COOKIE, value[:-4] + "AAAA", path="/ui")
        refused = client.post("/ui/logout", data={"csrf_token": "anything"})
        assert refused.status_code == 403  # a tampered cookie is an empty session


def test_expired_session_is_empty(live: LiveServer) -> None:
    """The session's end is enforced by the server, not only by the cookie's Max-Age."""
    stale = encode(live.settings, WebSession(csrf="known", until=time.time() - 1))
    with httpx.Client(base_url=live.url, cookies={COOKIE: stale}) as client:
        assert client.post("/ui/logout", data={"csrf_token": "known"}).status_code == 403
    fresh = encode(live.settings, WebSession(csrf="known", until=time.time() + 60))
    with httpx.Client(base_url=live.url, cookies={COOKIE: fresh}) as client:
        assert client.post("/ui/logout", data={"csrf_token": "known"}).status_code == 303


def test_post_without_csrf_token_is_refused(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        client.get("/ui/login")
        refused = client.post("/ui/login/dev", data={"user": "mallory", "project": "p", "experiment": "e"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert refused.headers["content-type"].startswith("text/html")


def test_api_errors_stay_problem_json(live: LiveServer) -> None:
    """The UI's HTML error pages do not change the API's answers."""
    response = httpx.get(f"{live.bi}/resources")
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"

