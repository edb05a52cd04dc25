"""Health, readiness, Prometheus metrics and request ids."""

from __future__ import annotations

from tests.helpers import Api


def test_health_and_readiness(live, http) -> None:
    assert http.get(f"{live.url}/healthz").json() == {"status": "ok"}
    assert http.get(f"{live.url}/readyz").json() == {"status": "ready"}


def test_metrics_count_requests_and_resources_by_state(live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "metrics")
    api.wait_task(token, api.create(token, ["m1"], flavor, image)["id"])
    text = http.get(f"{live.url}/metrics").text
    assert 'sb_resources{provider="test-double",status="running"}' in text
    assert 'sb_http_requests_total{method="POST",route="/apis/bi.slices.eu/v1alpha2/resources",status="202"}' in text
    assert 'sb_task_duration_seconds_count{kind="create",outcome="ok",provider="test-double"}' in text


def test_request_id_is_echoed_or_made(live, http) -> None:
    response = http.get(f"{live.url}/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    assert len(http.get(f"{live.url}/healthz").headers["X-Request-ID"]) == 32


def test_unknown_route_is_a_problem_document(live, http) -> None:
    response = http.get(f"{live.url}/nope")
    assert response.status_code == 404 and response.json()["title"] == "Not found"
