"""Low findings: security headers on every response, and ``/metrics`` only for the metrics
bearer token or an allowed network. (The browser side of the CSP is proven in
tests/browser/test_content_security_policy.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from tests.conftest import LiveServer, free_port, make_settings, start_server


@pytest.mark.parametrize("path", ["/ui/login", "/docs", "/healthz", "/apis/bi.slices.eu/v1alpha2/flavors",
                                  "/ui/static/vendor/htmx.min.js", "/no-such-page"])
def test_every_response_carries_the_security_headers(live: LiveServer, http: httpx.Client, path: str) -> None:
    headers = http.get(f"{live.url}{path}").headers
    csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert csp["script-src"] == "'self'" and "unsafe" not in headers["content-security-policy"]
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_api_docs_name_no_other_site(live: LiveServer, http: httpx.Client) -> None:
    page = http.get(f"{live.url}/docs").text
    assert "cdn" not in page.lower() and "https://" not in page and "<script>" not in page
    for asset in ("/ui/static/vendor/swagger-ui/swagger-ui-bundle.js", "/ui/static/vendor/swagger-ui/swagger-ui.css"):
        assert http.get(f"{live.url}{asset}").status_code == 200


@pytest.fixture(scope="module")
def closed_metrics(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A production-like service (dev mode off): metrics for a token or 127.0.0.1 only."""
    settings = make_settings(tmp_path_factory.mktemp("metrics"), database_url, free_port(), dev_mode=False,
                             providers=["vm"], metrics_token=SecretStr("scrape-secret-1"),
                             metrics_allowed_networks=["127.0.0.1/32"])
    server = start_server(settings, database_url, worker=False)
    yield server
    server.stop()


def test_metrics_refuse_strangers(closed_metrics: LiveServer) -> None:
    url = f"{closed_metrics.url}/metrics"
    other = httpx.HTTPTransport(local_address="127.0.0.2")  # a client outside the allowed network
    with httpx.Client(transport=other) as stranger:
        assert stranger.get(url).status_code == 403
        assert stranger.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
        scraped = stranger.get(url, headers={"Authorization": "Bearer scrape-secret-1"})
        assert scraped.status_code == 200 and "sb_http_requests_total" in scraped.text
    assert httpx.get(url).status_code == 200  # from 127.0.0.1: an allowed network
