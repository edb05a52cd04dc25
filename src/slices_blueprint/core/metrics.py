"""Prometheus metrics: requests, task durations, orphans deleted; resources and hosts by
state (read at scrape time)."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY

REQUESTS = Counter("sb_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("sb_http_request_seconds", "HTTP request latency", ["method", "route"])
TASK_DURATION = Histogram(
    "sb_task_duration_seconds", "Time a provider operation took", ["kind", "provider", "outcome"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)


ORPHANS_DELETED = Counter(
    "sb_orphans_deleted_total", "Provider objects the reconciler deleted after their resource was gone",
    ["provider"],
)


class CountsCollector:
    """A gauge family from counts the app refreshes at scrape time (one query, not a gauge
    kept in step with every change)."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.counts: dict[tuple[str, ...], int] = {}

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, count in sorted(self.counts.items()):
            family.add_metric(list(key), count)
        yield family


RESOURCE_STATES = CountsCollector("sb_resources", "Compute resources by status", ["status", "provider"])
HOST_STATES = CountsCollector("sb_hosts", "MicroVM hosts by status", ["status"])
for _collector in (RESOURCE_STATES, HOST_STATES):
    REGISTRY.register(_collector)


def install_metrics(app: FastAPI) -> None:
    """Serve ``/metrics`` (request counters are kept by ``core.middleware``)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await app.state.refresh_counts()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
