"""Prometheus metrics: requests, task durations, resources by state (read at scrape time)."""

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


class ResourceStateCollector:
    """Reports ``sb_resources{status,provider}`` from the latest counts the app refreshed."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def collect(self):
        family = GaugeMetricFamily("sb_resources", "Compute resources by status", labels=["status", "provider"])
        for (status, provider), count in sorted(self.counts.items()):
            family.add_metric([status, provider], count)
        yield family


RESOURCE_STATES = ResourceStateCollector()
REGISTRY.register(RESOURCE_STATES)


def install_metrics(app: FastAPI) -> None:
    """Serve ``/metrics`` (request counters are kept by ``core.middleware``)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await app.state.refresh_resource_counts()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
