"""Health, readiness, Prometheus metrics and request ids."""

from __future__ import annotations

import re

from tests.helpers import Api, some_certificate


def test_health_and_readiness(live, http) -> None:
    assert http.get(f"{live.url}/healthz").json() == {"status": "ok"}
    assert http.get(f"{live.url}/readyz").json() == {"status": "ready"}
    # the probes are matched before the API's and the UI's routes (a hundred and more, each
    # a regular expression tried in order: /healthz took 0.9 ms of CPU after them, 0.24 first)
    paths = [getattr(route, "path", None) for route in live.server.config.app.routes]
    assert paths[1:3] == ["/healthz", "/readyz"] and paths[0].endswith("/openapi.json")  # FastAPI's own first


def test_metrics_count_requests_and_resources_by_state(live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "metrics")
    api.wait_task(token, api.create(token, ["m1"], flavor, image)["id"])
    text = http.get(f"{live.url}/metrics").text
    assert 'sb_resources{provider="test-double",status="running"}' in text
    assert 'sb_http_requests_total{method="POST",route="/apis/bi.slices.eu/v1alpha2/resources",status="202"}' in text
    assert 'sb_task_duration_seconds_count{kind="create",outcome="ok",provider="test-double"}' in text
    assert "# TYPE sb_orphans_deleted_total counter" in text


def test_metrics_count_hosts_by_status(live, http, tmp_path) -> None:
    admin = {"Authorization": f"Bearer {Api(live, http).token('admin')}"}
    hosts = f"{live.url}/api/v1/hosts"
    host = http.post(f"{hosts}/register", headers=admin, json={
        "name": "metrics-host", "url": "https://metrics-host.invalid:8700", "token": "m" * 32,
        "cert_pem": some_certificate(tmp_path), "vcpus": 0, "memory_mib": 0,
        "disk_free_mib": 0}).json()["id"]
    try:
        http.post(f"{hosts}/{host}/drain", headers=admin).raise_for_status()
        draining = re.search(r'^sb_hosts\{status="draining"\} (\d+)', http.get(f"{live.url}/metrics").text, re.MULTILINE)
        assert draining is not None and float(draining.group(1)) >= 1
    finally:
        http.delete(f"{hosts}/{host}", headers=admin)


def test_request_id_is_echoed_or_made(live, http) -> None:
    response = http.get(f"{live.url}/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    assert len(http.get(f"{live.url}/healthz").headers["X-Request-ID"]) == 32


def test_unknown_route_is_a_problem_document(live, http) -> None:
    response = http.get(f"{live.url}/nope")
    assert response.status_code == 404 and response.json()["title"] == "Not found"
