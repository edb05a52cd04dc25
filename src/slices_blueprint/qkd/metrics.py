"""Prometheus metrics of QKD networks.

Per link and per KME, gauges read from the database at each scrape of the service's
``/metrics`` (:func:`refresh_network_gauges`, registered by ``slices_blueprint.domains``).
In the process that runs the KMEs (``serve`` or ``kme-host``): keys handed out and
delivered, refused requests, and which KMEs it serves. ``kme-host`` shows these on a
loopback port of its own when ``qkd_kme_metrics_port`` is set (:func:`serve_kme_metrics`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client import Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.qkd import keypool
from slices_blueprint.qkd.models import QkdLink, QkdNetwork, QkdNode
from slices_blueprint.qkd.service import ID_TYPE, STATUS_KEY_SIZE, kme_url, link_name

log = structlog.get_logger(__name__)

NETWORK_LABELS = ["network_id", "network", "experiment_id"]
REFUSAL_STATUSES = ("400", "401", "503")  # the ETSI 014 error answers

KME_KEYS = Counter("qkd_kme_keys", "Keys this process's KMEs handed to masters (enc) and slaves (dec)",
                   ["kme_id", "operation"])
KME_REFUSALS = Counter("qkd_kme_refusals", "ETSI 014 requests this process's KMEs refused, by status",
                       ["kme_id", "status"])
KME_SERVING = Gauge("qkd_kme_serving", "1 while this process serves the KME, 0 while it cannot listen",
                    ["kme_id"])


@dataclass(frozen=True)
class LinkReading:
    """One link's figures as of the last scrape."""

    labels: tuple[str, ...]
    rate_bps: float
    qber: float
    stored_keys: int
    max_keys: int
    delivered_keys: int
    generating: bool


LINK_GAUGES: tuple[tuple[str, str, Callable[[LinkReading], float]], ...] = (
    ("qkd_link_secret_key_rate_bps", "Emulated secret-key rate of the link, bits/s",
     lambda r: r.rate_bps),
    ("qkd_link_qber", "Quantum bit error rate of the link", lambda r: r.qber),
    ("qkd_link_stored_keys", f"{STATUS_KEY_SIZE}-bit keys in each end's pool", lambda r: r.stored_keys),
    ("qkd_link_max_keys", "Pool capacity (max_key_count)", lambda r: r.max_keys),
    ("qkd_link_delivered_keys", "Keys the link has spent since it was created", lambda r: r.delivered_keys),
    ("qkd_link_generating", "1 while the link generates key, 0 when stopped", lambda r: float(r.generating)),
)


class NetworkGauges(Collector):
    """The links and KMEs of live networks, as read by the last :func:`refresh_network_gauges`."""

    def __init__(self) -> None:
        self.links: list[LinkReading] = []
        self.kmes: list[dict[str, str]] = []

    def collect(self) -> Iterator[Metric]:
        links = self.links
        for name, documentation, value in LINK_GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=[*NETWORK_LABELS, "link"])
            for reading in links:
                family.add_metric(list(reading.labels), value(reading))
            yield family
        info = InfoMetricFamily("qkd_kme", "A KME of a live QKD network (its ETSI 014 root URL)")
        for labels in self.kmes:
            info.add_metric([], labels)
        yield info


NETWORK_GAUGES = NetworkGauges()
REGISTRY.register(NETWORK_GAUGES)


async def refresh_network_gauges(session: AsyncSession, settings: Settings) -> None:
    """Read every live network's links and KMEs into :data:`NETWORK_GAUGES`."""
    networks = {row.id: row for row in await session.execute(
        select(QkdNetwork.id, QkdNetwork.name, QkdNetwork.experiment_id).where(QkdNetwork.status == "active"))}
    nodes = {n.id: n for n in await session.scalars(select(QkdNode).where(QkdNode.network_id.in_(networks)))}
    links = await session.scalars(select(QkdLink).where(QkdLink.network_id.in_(networks)).order_by(QkdLink.id))

    def network_labels(network_id: uuid.UUID) -> tuple[str, str, str]:
        network = networks[network_id]
        return format_id(ID_TYPE, settings.site_id, network.id), network.name, network.experiment_id

    now = utcnow()
    NETWORK_GAUGES.links = [LinkReading(
        labels=(*network_labels(link.network_id), link_name(link, nodes)), rate_bps=link.rate_bps,
        qber=link.qber, stored_keys=keypool.stored_key_count(link, STATUS_KEY_SIZE, now),
        max_keys=link.max_key_count, delivered_keys=link.delivered_keys,
        generating=link.state == "generating") for link in links]
    NETWORK_GAUGES.kmes = [
        dict(zip(NETWORK_LABELS, network_labels(n.network_id), strict=True),
             kme_id=n.kme_id, node=n.name, url=kme_url(n, settings))
        for n in sorted(nodes.values(), key=lambda n: n.kme_id)]


def kme_refused(kme_id: str, status: int) -> None:
    KME_REFUSALS.labels(kme_id, str(status)).inc()


def kme_keys(kme_id: str, operation: str, count: int) -> None:
    KME_KEYS.labels(kme_id, operation).inc(count)


def kme_serving(kme_id: str, serving: bool) -> None:
    KME_SERVING.labels(kme_id).set(1 if serving else 0)


def forget_kme(kme_id: str) -> None:
    """Drop a stopped KME's series, so a long-running process does not keep every KME it
    ever served."""
    KME_SERVING.remove(kme_id)
    for operation in ("enc", "dec"):
        KME_KEYS.remove(kme_id, operation)
    for status in REFUSAL_STATUSES:
        KME_REFUSALS.remove(kme_id, status)


def serve_kme_metrics(settings: Settings) -> None:
    """Serve this process's metrics on ``127.0.0.1:qkd_kme_metrics_port`` (a thread of
    prometheus_client's), when that is set: for a ``kme-host``, which has no ``/metrics``."""
    port = settings.qkd_kme_metrics_port
    if port is None:
        return
    start_http_server(port, addr="127.0.0.1")
    log.info("qkd.kme_host.metrics_serving", url=f"http://127.0.0.1:{port}/metrics")
