"""Runs the KMEs of the live QKD networks that listen on this machine, one TLS server each,
started and stopped as networks come and go (``serve`` runs one; so does ``kme-host``)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog
from sqlalchemy import select

from slices_blueprint.core.runtime import Runtime
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.qkd import metrics
from slices_blueprint.qkd.kme import create_kme_app
from slices_blueprint.qkd.models import QkdNetwork, QkdNode
from slices_blueprint.qkd.pki import Issued
from slices_blueprint.qkd.tls_server import TLSServer, serve_tls

log = structlog.get_logger(__name__)
RECONCILE_SECONDS = 1.0


class KmeHost:
    """The KME servers of this process, kept in step with the database."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.servers: dict[uuid.UUID, TLSServer] = {}
        self.kme_ids: dict[uuid.UUID, str] = {}  # of the servers, and of those that failed to listen

    async def reconcile(self) -> None:
        """Start the KMEs of new networks, stop those of deleted ones."""
        settings = self.runtime.settings
        async with self.runtime.db.session() as session:
            rows = (await session.execute(
                select(QkdNode, QkdNetwork.ca_cert_pem).join(QkdNetwork, QkdNetwork.id == QkdNode.network_id)
                .where(QkdNetwork.status == "active", QkdNode.kme_host == settings.qkd_kme_host))).all()
        wanted = {node.id: (node, ca) for node, ca in rows}
        for node_id in set(self.kme_ids) - set(wanted):
            if node_id in self.servers:
                await self.servers.pop(node_id).stop()
            metrics.forget_kme(self.kme_ids.pop(node_id))
            log.info("qkd.kme.stopped", node_id=str(node_id))
        box = secret_box(settings)
        for node_id, (node, ca) in wanted.items():
            if node_id in self.servers:
                continue
            server = Issued(cert_pem=node.server_cert_pem.encode(), key_pem=box.decrypt(node.server_key))
            self.kme_ids[node_id] = node.kme_id
            try:
                self.servers[node_id] = await serve_tls(
                    create_kme_app(self.runtime, node_id, node.kme_id), host=node.kme_host, port=node.kme_port,
                    server=server, ca_cert_pem=ca.encode(), reuse_port=settings.qkd_kme_reuse_port)
            except OSError as exc:  # the port is taken: say so, try again next round
                log.error("qkd.kme.listen_failed", kme_id=node.kme_id, port=node.kme_port, error=str(exc))
                metrics.kme_serving(node.kme_id, False)
                continue
            metrics.kme_serving(node.kme_id, True)
            log.info("qkd.kme.started", kme_id=node.kme_id, host=node.kme_host, port=node.kme_port)

    async def run(self) -> None:
        """Reconcile until cancelled, then stop every KME."""
        try:
            while True:
                try:
                    await self.reconcile()
                except Exception:  # the database may be briefly away: keep serving
                    log.exception("qkd.kme_host.reconcile_failed")
                await asyncio.sleep(RECONCILE_SECONDS)
        finally:
            for node_id in list(self.servers):
                with contextlib.suppress(Exception):
                    await self.servers.pop(node_id).stop()
            for kme_id in self.kme_ids.values():
                metrics.forget_kme(kme_id)
            self.kme_ids.clear()
