"""Prometheus metrics: requests, task durations, orphans deleted; resources and hosts by
state (read at scrape time), and what higher domains register to refresh at scrape time."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Forbidden

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


ScrapeRefresher = Callable[[AsyncSession, Settings], Awaitable[None]]
_refreshers: dict[str, ScrapeRefresher] = {}


def register_scrape_refresher(name: str, refresher: ScrapeRefresher) -> None:
    """Have ``refresher`` bring its gauges up to date at each scrape of ``/metrics`` (wired at
    start-up by ``slices_blueprint.domains``; registering ``name`` again replaces it)."""
    _refreshers[name] = refresher


async def refresh_registered(session: AsyncSession, settings: Settings) -> None:
    """Run every registered scrape-time refresher in ``session``."""
    for refresher in _refreshers.values():
        await refresher(session, settings)


def metrics_access(settings: Settings) -> Callable[[Request], None]:
    """The check in front of ``/metrics``: the ``metrics_token`` bearer, or a client address in
    ``metrics_allowed_networks`` (loopback too in dev mode); everyone else gets 403."""
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.metrics_allowed_networks]
    if settings.dev_mode:
        networks += [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    def check(request: Request) -> None:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if token and scheme.lower() == "bearer" and hmac.compare_digest(sent.encode(), token):
            return
        try:
            client = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            client = None
        if client is not None and any(client in network for network in networks):
            return
        raise Forbidden("metrics are served to the metrics_token bearer and to "
                        "metrics_allowed_networks only")

    return check


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Serve ``/metrics`` behind :func:`metrics_access` (request counters are kept by
    ``core.middleware``)."""
    allowed = metrics_access(settings)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        allowed(request)
        await app.state.refresh_counts()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
