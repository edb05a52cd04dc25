"""The experiment as it is: its live resources, QKD networks and reservations, read as the
experiment file describes them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.experiments.schemas import (
    ExperimentFile,
    FlavorRef,
    ImageRef,
    ReservationEntry,
    ResourceEntry,
)
from slices_blueprint.identity.models import Experiment
from slices_blueprint.qkd.description import NetworkDescription
from slices_blueprint.qkd.models import LIVE as LIVE_NETWORKS
from slices_blueprint.qkd.models import QkdLink, QkdNetwork, QkdNode
from slices_blueprint.reservations.models import LIVE, Reservation
from slices_blueprint.reservations.schemas import ReservationAsk
from slices_blueprint.resources.models import ComputeResource

GONE = ("deleting", "deleted")


@dataclass
class LiveState:
    """The rows behind the file, by name (reservations by their entry's key)."""

    resources: dict[str, tuple[ComputeResource, ResourceEntry]]
    networks: dict[str, tuple[QkdNetwork, NetworkDescription]]
    reservations: dict[str, tuple[Reservation, ReservationEntry]]

    def as_file(self) -> ExperimentFile:
        return ExperimentFile(resources=[e for _, e in self.resources.values()],
                              qkd_networks=[d for _, d in self.networks.values()],
                              reservations=[e for _, e in self.reservations.values()])


def flavor_ref(flavor: Flavor) -> FlavorRef:
    return FlavorRef(name=flavor.friendly_name, flavor_type=flavor.flavor_type, provider_ref=flavor.provider_ref,
                     vcpus=flavor.vcpus, ram_mib=flavor.ram_mib, disk_mb=flavor.disk_mb)


def image_ref(image: DiskImage) -> ImageRef:
    return ImageRef(name=image.friendly_name, flavor_type=image.flavor_type, location=image.location)


def resource_entry(resource: ComputeResource, flavor: Flavor, image: DiskImage) -> ResourceEntry:
    """A resource as its request made it (the account's SSH key, added by the service, left out)."""
    asked = resource.request_config or {}
    return ResourceEntry(name=resource.friendly_name, flavor=flavor_ref(flavor), image=image_ref(image),
                         userdata=asked.get("userdata"), request_config=asked.get("config") or {},
                         network_interfaces=asked.get("network_interfaces") or [],
                         public_ipv4=bool(asked.get("public_ipv4")),
                         ssh_authorized_keys=asked.get("ssh_authorized_keys") or [])


async def network_description(session: AsyncSession, network: QkdNetwork) -> NetworkDescription:
    """The network's description with its links' parameters as they are now (changed by
    PATCH since), without its expiry."""
    nodes = {n.id: n.name for n in await session.scalars(select(QkdNode).where(QkdNode.network_id == network.id))}
    now = {frozenset((nodes[link.node_a_id], nodes[link.node_b_id])): link.parameters
           for link in await session.scalars(select(QkdLink).where(QkdLink.network_id == network.id))}
    described = {k: v for k, v in network.description.items() if k in NetworkDescription.model_fields}
    described |= {"expires_at": None, "reservation_id": None}  # not its own record (``deliveries``)
    described["links"] = [{**link, **(now.get(frozenset(link["between"])) or {})} for link in described["links"]]
    return NetworkDescription.model_validate(described)


def reservation_entry(reservation: Reservation) -> ReservationEntry:
    hours = (reservation.ends_at - reservation.starts_at).total_seconds() / 3600
    ask = ReservationAsk.model_validate(reservation.request)
    return ReservationEntry(**ask.model_dump(), start=reservation.starts_at, duration_hours=round(hours, 6))


def reservation_key(entry: ReservationEntry) -> str:
    """What tells two reservations apart: what they ask, when, for how long."""
    return entry.model_copy(update={"start": entry.start.astimezone(dt.UTC)}).model_dump_json()


async def read(session: AsyncSession, experiment: Experiment) -> LiveState:
    """The experiment's live resources, networks and reservations, ordered by name (and start)."""
    resources = {}
    rows = await session.scalars(select(ComputeResource).where(
        ComputeResource.experiment_id == experiment.id, ComputeResource.status.not_in(GONE))
        .order_by(ComputeResource.friendly_name))
    for resource in rows:
        flavor, image = await session.get(Flavor, resource.flavor_id), await session.get(DiskImage, resource.disk_image_id)
        resources[resource.friendly_name] = (resource, resource_entry(resource, flavor, image))
    networks = {}
    for network in await session.scalars(select(QkdNetwork).where(
            QkdNetwork.experiment_id == experiment.id, QkdNetwork.status.in_(LIVE_NETWORKS)).order_by(QkdNetwork.name)):
        networks[network.name] = (network, await network_description(session, network))
    reservations = {}
    for reservation in await session.scalars(select(Reservation).where(
            Reservation.experiment_id == experiment.id, Reservation.status.in_(LIVE))
            .order_by(Reservation.starts_at, Reservation.id)):
        entry = reservation_entry(reservation)
        reservations[reservation_key(entry)] = (reservation, entry)
    return LiveState(resources, networks, reservations)
