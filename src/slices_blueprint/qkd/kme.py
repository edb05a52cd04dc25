"""A Key Management Entity: the ETSI GS QKD 014 API of one node of one QKD network.

Each KME is its own ASGI app, served at the root of its own ``https://host:port`` with mutual
TLS against its network's certificate authority (see ``tls_server``); the calling SAE is the
one its verified client certificate names, and it must be attached to this node. Key pools
live in PostgreSQL (``keypool``), so a KME restarts with its pools intact and several KME
processes may serve one network without handing out one key twice.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from slices_blueprint.core.config import QkdDevice
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.core.secretbox import SecretBox, secret_box
from slices_blueprint.qkd import etsi014, keypool, metrics
from slices_blueprint.qkd.device_gateway import DeviceError, call_device
from slices_blueprint.qkd.models import QkdLink, QkdNetwork, QkdNode, QkdSae
from slices_blueprint.qkd.tls_server import SAEUnauthenticated, caller_sae_id

log = structlog.get_logger(__name__)


class EtsiError(Exception):
    """An ETSI 014 error answer: 400, 401 or 503 with ``{"message", "details"}``."""

    def __init__(self, status: int, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, [detail] if detail else []


@dataclass
class Call:
    """What one request to this KME knows: its network, node, caller and link graph."""

    session: AsyncSession
    box: SecretBox
    network: QkdNetwork
    node: QkdNode
    caller: QkdSae
    saes: dict[str, QkdSae]
    nodes: dict[uuid.UUID, QkdNode]
    links: list[QkdLink]
    devices: dict[uuid.UUID, tuple[str, QkdDevice]]  # device nodes: the site's device behind each

    @property
    def device(self) -> tuple[str, QkdDevice] | None:
        """The real device behind this KME, if it is a device node."""
        return self.devices.get(self.node.id)

    @property
    def device_name(self) -> str | None:
        return self.device[0] if self.device else None

    def device_sae(self, other: QkdSae) -> str:
        """The site's SAE_ID at the device of ``other``'s node, a device linked to this one."""
        if other.node_id == self.node.id:
            raise EtsiError(400, "both SAEs are at this KME: keys come from a QKD link between two nodes")
        linked = any({link.node_a_id, link.node_b_id} == {self.node.id, other.node_id} for link in self.links)
        if other.node_id not in self.devices or not linked:
            raise EtsiError(400, f"SAE {other.sae_id!r} is not at a QKD device linked to this one "
                                 "(keys are not relayed between devices)")
        return self.devices[other.node_id][1].sae_id

    def sae(self, sae_id: str, role: str) -> QkdSae:
        found = self.saes.get(sae_id)
        if found is None:
            raise EtsiError(400, f"{role} SAE {sae_id!r} is not in this QKD network")
        return found

    def path_to(self, other: QkdSae) -> list[QkdLink]:
        try:
            return keypool.path_links(keypool.link_graph(self.links), self.node.id, other.node_id)
        except keypool.KeyRequestError as exc:
            raise EtsiError(400, str(exc)) from None
        except keypool.KeysUnavailable as exc:
            raise EtsiError(503, str(exc)) from None


async def call(request: Request) -> AsyncIterator[Call]:
    """The request's network, node and caller (401 unless its SAE is attached to this KME);
    its transaction commits before the answer is sent."""
    runtime, node_id, box = request.app.state.runtime, request.app.state.node_id, request.app.state.box
    try:
        sae_id = caller_sae_id(request)
    except SAEUnauthenticated as exc:
        raise EtsiError(401, str(exc)) from None
    async with runtime.db.session() as session:
        layout = request.app.state.layout or await _read_layout(session, node_id, runtime.settings.qkd_devices)
        # the one read per request: the links' live state, and that the network still lives
        links = list(await session.scalars(
            select(QkdLink).join(QkdNetwork, QkdNetwork.id == QkdLink.network_id)
            .where(QkdLink.network_id == layout.network.id, QkdNetwork.status == "active")))
        if not links:
            request.app.state.layout = None
            raise EtsiError(503, "this KME's QKD network no longer exists")
        request.app.state.layout = layout
        caller = layout.saes.get(sae_id)
        if caller is None or caller.node_id != layout.node.id:
            log.warning("qkd.kme.unauthorised", kme_id=layout.node.kme_id, sae_id=sae_id)
            raise EtsiError(401, f"SAE {sae_id!r} is not attached to KME {layout.node.kme_id}")
        yield Call(session, box, layout.network, layout.node, caller, layout.saes, layout.nodes, links,
                   layout.devices)


@dataclass(frozen=True)
class Layout:
    """What a KME's network holds that does not change while it lives (its nodes, SAEs and
    devices), read once per KME; only the links are read on each request."""

    network: QkdNetwork
    node: QkdNode
    saes: dict[str, QkdSae]
    nodes: dict[uuid.UUID, QkdNode]
    devices: dict[uuid.UUID, tuple[str, QkdDevice]]


async def _read_layout(session: AsyncSession, node_id: uuid.UUID, site: dict[str, QkdDevice]) -> Layout:
    """The layout of node ``node_id``'s network; 503 once the network is deleted, also while
    it is read (each read sees the last commit: its nodes may be gone by the last one)."""
    gone = EtsiError(503, "this KME's QKD network no longer exists")
    node = await session.get(QkdNode, node_id)
    network = await session.get(QkdNetwork, node.network_id) if node else None
    if node is None or network is None or network.status != "active":
        raise gone
    saes = {s.sae_id: s for s in await session.scalars(  # no key material kept in memory
        select(QkdSae).where(QkdSae.network_id == network.id)
        .options(load_only(QkdSae.id, QkdSae.sae_id, QkdSae.node_id)))}
    nodes = {n.id: n for n in await session.scalars(
        select(QkdNode).where(QkdNode.network_id == network.id)
        .options(load_only(QkdNode.id, QkdNode.name, QkdNode.kme_id, QkdNode.network_id)))}
    if node.id not in nodes:
        raise gone
    for row in (network, *saes.values(), *nodes.values()):
        session.expunge(row)  # kept as read: a later request's rollback must not expire it
    return Layout(network, nodes[node.id], saes, nodes, _devices(network, nodes.values(), site))


def _devices(network: QkdNetwork, nodes: Iterable[QkdNode],
             site: dict[str, QkdDevice]) -> dict[uuid.UUID, tuple[str, QkdDevice]]:
    named = {n["name"]: n.get("device") for n in network.description.get("nodes", [])}
    found = {}
    for node in nodes:
        device = named.get(node.name)
        if device:
            if device not in site:
                raise EtsiError(503, f"QKD device {device} is no longer offered by this site")
            found[node.id] = (device, site[device])
    return found


CallDep = Annotated[Call, Depends(call, scope="function")]


def create_kme_app(runtime: Runtime, node_id: uuid.UUID, kme_id: str) -> FastAPI:
    """The ETSI 014 app of the KME ``kme_id`` of node ``node_id``."""
    app = FastAPI(title="slices-blueprint KME (ETSI GS QKD 014)", openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.runtime, app.state.node_id, app.state.layout = runtime, node_id, None
    app.state.box = secret_box(runtime.settings)

    @app.exception_handler(EtsiError)
    async def _etsi(_: Request, exc: EtsiError) -> JSONResponse:
        metrics.kme_refused(kme_id, exc.status)
        return JSONResponse(etsi014.Error(message=exc.message, details=exc.details).model_dump(),
                            status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": ".".join(str(p) for p in e["loc"][1:]), "problem": e["msg"]}
                   for e in exc.errors()]
        metrics.kme_refused(kme_id, 400)
        return JSONResponse(etsi014.Error(message="bad request", details=details).model_dump(),
                            status_code=400)

    @app.get("/api/v1/keys/{slave_SAE_ID}/status", response_model=etsi014.Status)
    async def status(slave_SAE_ID: str, c: CallDep) -> etsi014.Status:
        slave = c.sae(slave_SAE_ID, "slave")
        if c.device:
            return await device_status(c, slave)
        path = c.path_to(slave)
        now = utcnow()
        return etsi014.Status(
            source_KME_ID=c.node.kme_id, target_KME_ID=c.nodes[slave.node_id].kme_id,
            master_SAE_ID=c.caller.sae_id, slave_SAE_ID=slave.sae_id, key_size=etsi014.KEY_SIZE,
            stored_key_count=min(keypool.stored_key_count(link, etsi014.KEY_SIZE, now) for link in path),
            max_key_count=min(link.max_key_count for link in path),
            max_key_per_request=etsi014.MAX_KEY_PER_REQUEST, max_key_size=etsi014.MAX_KEY_SIZE,
            min_key_size=etsi014.MIN_KEY_SIZE, max_SAE_ID_count=etsi014.MAX_SAE_ID_COUNT,
            status_extension={"emulated": True, "hops": len(path)},
        )

    async def enc_keys(c: Call, slave_sae_id: str, ask: etsi014.KeyRequest) -> etsi014.KeyContainer:
        if ask.extension_mandatory:
            raise EtsiError(400, "this KME supports no mandatory extension",
                            extension_mandatory=ask.extension_mandatory)
        slaves = [c.sae(s, "slave") for s in dict.fromkeys([slave_sae_id, *ask.additional_slave_SAE_IDs])]
        if any(s.id == c.caller.id for s in slaves):
            raise EtsiError(400, "the master SAE cannot be its own slave")
        if c.device:
            return await device_enc_keys(c, slaves, ask)
        paths = [c.path_to(s) for s in slaves]
        try:
            keys = await keypool.hand_out(
                c.session, c.box, network_id=c.network.id, master_sae_id=c.caller.sae_id,
                paths=paths, slave_sae_ids=[s.sae_id for s in slaves], number=ask.number, size=ask.size)
        except keypool.KeysUnavailable as exc:
            raise EtsiError(503, str(exc)) from None
        log.info("qkd.keys.handed_out", network_id=str(c.network.id), kme_id=c.node.kme_id,
                 master_sae_id=c.caller.sae_id, slave_sae_ids=[s.sae_id for s in slaves],
                 number=ask.number, size=ask.size, hops=max(len(p) for p in paths))
        metrics.kme_keys(kme_id, "enc", len(keys))
        return _container(keys)

    @app.get("/api/v1/keys/{slave_SAE_ID}/enc_keys", response_model=etsi014.KeyContainer)
    async def get_enc_keys(
        slave_SAE_ID: str, c: CallDep,
        number: int = Query(default=1, ge=1, le=etsi014.MAX_KEY_PER_REQUEST),
        size: int = Query(default=etsi014.KEY_SIZE, ge=etsi014.MIN_KEY_SIZE, le=etsi014.MAX_KEY_SIZE,
                          multiple_of=8),
    ) -> etsi014.KeyContainer:
        return await enc_keys(c, slave_SAE_ID, etsi014.KeyRequest(number=number, size=size))

    @app.post("/api/v1/keys/{slave_SAE_ID}/enc_keys", response_model=etsi014.KeyContainer)
    async def post_enc_keys(slave_SAE_ID: str, body: etsi014.KeyRequest, c: CallDep) -> etsi014.KeyContainer:
        return await enc_keys(c, slave_SAE_ID, body)

    async def dec_keys(c: Call, master_sae_id: str, key_ids: list[str]) -> etsi014.KeyContainer:
        master = c.sae(master_sae_id, "master")
        try:
            wanted = [uuid.UUID(k) for k in key_ids]
        except ValueError:
            raise EtsiError(400, "a key_ID is not a UUID", key_IDs=key_ids) from None
        if c.device:
            return await device_dec_keys(c, master, wanted)
        try:
            keys = await keypool.fetch_for_slave(
                c.session, c.box, network_id=c.network.id, master_sae_id=master.sae_id,
                slave_sae_id=c.caller.sae_id, key_ids=wanted)
        except keypool.KeyRequestError as exc:
            raise EtsiError(400, str(exc)) from None
        log.info("qkd.keys.delivered", network_id=str(c.network.id), kme_id=c.node.kme_id,
                 master_sae_id=master.sae_id, slave_sae_id=c.caller.sae_id, number=len(keys))
        metrics.kme_keys(kme_id, "dec", len(keys))
        return _container(keys)

    @app.get("/api/v1/keys/{master_SAE_ID}/dec_keys", response_model=etsi014.KeyContainer)
    async def get_dec_keys(master_SAE_ID: str, c: CallDep, key_ID: str = Query()) -> etsi014.KeyContainer:
        return await dec_keys(c, master_SAE_ID, [key_ID])

    @app.post("/api/v1/keys/{master_SAE_ID}/dec_keys", response_model=etsi014.KeyContainer)
    async def post_dec_keys(master_SAE_ID: str, body: etsi014.KeyIds, c: CallDep) -> etsi014.KeyContainer:
        return await dec_keys(c, master_SAE_ID, [k.key_ID for k in body.key_IDs])

    del status, get_enc_keys, post_enc_keys, get_dec_keys, post_dec_keys
    return app


async def _forward(c: Call, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    assert c.device is not None
    name, device = c.device
    try:
        return await call_device(name, device, method, path, json=body)
    except DeviceError as exc:
        raise EtsiError(exc.status, exc.message) from None


async def device_status(c: Call, slave: QkdSae) -> etsi014.Status:
    """The device's status for the pair, in the experiment's SAE_IDs."""
    answer = await _forward(c, "GET", f"{c.device_sae(slave)}/status")
    try:
        return etsi014.Status.model_validate({
            **answer, "master_SAE_ID": c.caller.sae_id, "slave_SAE_ID": slave.sae_id,
            "status_extension": {"emulated": False, "device": c.device_name}})
    except ValueError:
        raise EtsiError(503, f"QKD device {c.device_name} answered a malformed status") from None


async def device_enc_keys(c: Call, slaves: list[QkdSae], ask: etsi014.KeyRequest) -> etsi014.KeyContainer:
    """Keys from the device for slaves at linked devices; counted on the link."""
    targets = [c.device_sae(s) for s in slaves]
    answer = await _forward(c, "POST", f"{targets[0]}/enc_keys", {
        "number": ask.number, "size": ask.size, "additional_slave_SAE_IDs": targets[1:]})
    try:
        container = etsi014.KeyContainer.model_validate(answer)
    except ValueError:
        raise EtsiError(503, "the QKD device answered malformed keys") from None
    links = [link for link in c.links if c.node.id in (link.node_a_id, link.node_b_id)
             and {link.node_a_id, link.node_b_id} & {s.node_id for s in slaves}]
    for link in await keypool.lock_links(c.session, links):
        link.delivered_keys += len(container.keys)
    metrics.kme_keys(c.node.kme_id, "enc", len(container.keys))
    log.info("qkd.keys.handed_out", network_id=str(c.network.id), kme_id=c.node.kme_id,
             device=c.device_name, master_sae_id=c.caller.sae_id,
             slave_sae_ids=[s.sae_id for s in slaves], number=len(container.keys), size=ask.size)
    return container


async def device_dec_keys(c: Call, master: QkdSae, key_ids: list[uuid.UUID]) -> etsi014.KeyContainer:
    """The device's keys shared by the master at a linked device."""
    answer = await _forward(c, "POST", f"{c.device_sae(master)}/dec_keys",
                            {"key_IDs": [{"key_ID": str(k)} for k in key_ids]})
    try:
        container = etsi014.KeyContainer.model_validate(answer)
    except ValueError:
        raise EtsiError(503, "the QKD device answered malformed keys") from None
    metrics.kme_keys(c.node.kme_id, "dec", len(container.keys))
    log.info("qkd.keys.delivered", network_id=str(c.network.id), kme_id=c.node.kme_id,
             device=c.device_name, master_sae_id=master.sae_id,
             slave_sae_id=c.caller.sae_id, number=len(container.keys))
    return container


def _container(keys: list[keypool.DeliveredKey]) -> etsi014.KeyContainer:
    return etsi014.KeyContainer(keys=[
        etsi014.Key(key_ID=str(k.key_id), key=base64.b64encode(k.material).decode()) for k in keys])
