"""The plan: what makes the experiment match a file (create, change, delete), and the
site's flavors and images the file's resources resolve to."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.models import utcnow
from slices_blueprint.experiments.live import LiveState, reservation_key
from slices_blueprint.experiments.schemas import (
    ExperimentFile,
    FlavorRef,
    ImageRef,
    PlanOut,
    PlanStep,
    ReservationEntry,
    ResourceEntry,
)
from slices_blueprint.qkd.description import NetworkDescription
from slices_blueprint.qkd.physics import LinkParameters

RECREATED = ("flavor", "image", "userdata", "request_config", "network_interfaces", "public_ipv4",
             "ssh_authorized_keys")


@dataclass
class Work:
    """The plan with what applying it needs: the catalog rows the file's resources resolve
    to, and the changed links per network."""

    plan: PlanOut
    catalog: dict[str, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)  # name: (flavor, image)
    link_changes: dict[str, dict[str, dict]] = field(default_factory=dict)  # network: {link: changes}
    reserve: list[ReservationEntry] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)  # keys of live reservations

    def named(self, kind: str, *actions: str) -> list[str]:
        """The names of the plan's steps of ``kind`` doing one of ``actions``."""
        return [s.name for s in self.plan.steps if s.kind == kind and s.action in actions]


async def _flavor(session: AsyncSession, ref: FlavorRef) -> Flavor | None:
    """The site's flavor of this type by name, else by provider id."""
    offered = select(Flavor).where(Flavor.flavor_type == ref.flavor_type, Flavor.hidden.is_(False)).order_by(Flavor.id)
    found = await session.scalar(offered.where(Flavor.friendly_name == ref.name))
    if found is None and ref.provider_ref:
        found = await session.scalar(offered.where(Flavor.provider_ref == ref.provider_ref))
    return found


async def _image(session: AsyncSession, ref: ImageRef) -> DiskImage | None:
    """The site's image of this type by location (the same bytes), else by name."""
    offered = select(DiskImage).where(DiskImage.flavor_type == ref.flavor_type, DiskImage.hidden.is_(False)).order_by(DiskImage.id)
    found = await session.scalar(offered.where(DiskImage.location == ref.location))
    return found or await session.scalar(offered.where(DiskImage.friendly_name == ref.name))


def _resource_changes(wanted: ResourceEntry, live: ResourceEntry, resolved: tuple[uuid.UUID, uuid.UUID],
                      current: tuple[uuid.UUID, uuid.UUID]) -> list[str]:
    changes = [name for name, ours, theirs in (("flavor", resolved[0], current[0]), ("image", resolved[1], current[1]))
               if ours != theirs]
    return changes + [f for f in RECREATED[2:] if getattr(wanted, f) != getattr(live, f)]


def _structure(description: NetworkDescription) -> dict:
    """A description without its links' physical parameters (which PATCH can change)."""
    dumped = description.model_dump(mode="json", exclude={"expires_at", "reservation_id"})
    dumped["links"] = sorted((sorted(link["between"]), link["max_key_count"]) for link in dumped["links"])
    return dumped


def _link_changes(wanted: NetworkDescription, live: NetworkDescription) -> dict[str, dict]:
    """Per link (``a-b``), the parameters that differ, as a PATCH body."""
    now = {frozenset(link.between): link.parameters().model_dump(mode="json") for link in live.links}
    changes = {}
    for link in wanted.links:
        ours, theirs = link.parameters().model_dump(mode="json"), now[frozenset(link.between)]
        differ = {k: v for k, v in ours.items() if theirs.get(k) != v and k in LinkParameters.model_fields}
        if differ:
            changes["-".join(link.between)] = differ
    return changes


def _reservation_name(entry: ReservationEntry) -> str:
    asked = [*entry.equipment, *(f"any {c.count} {c.kind}" for c in entry.any_of)]
    if entry.vcpus or entry.ram_mib:
        asked.append(f"{entry.vcpus} vCPUs/{entry.ram_mib} MiB")
    return f"{', '.join(asked) or 'nothing'} from {entry.start.isoformat()} for {entry.duration_hours:g} h"


def _same_running(wanted: ReservationEntry, live: ReservationEntry, now: dt.datetime) -> bool:
    """A reservation of the file whose start has passed matches a live one asking the same
    for as long that started later (it was made again from the moment it was applied)."""
    same_ask = wanted.model_dump(exclude={"start"}) == live.model_dump(exclude={"start"})
    return same_ask and wanted.start <= now and live.start >= wanted.start


async def make(session: AsyncSession, file: ExperimentFile, live: LiveState) -> Work:
    """Compare the file with the live experiment; nothing is changed."""
    work = Work(PlanOut(steps=[]))
    steps, missing = work.plan.steps, work.plan.missing
    for entry in file.resources:
        flavor, image = await _flavor(session, entry.flavor), await _image(session, entry.image)
        if flavor is None:
            missing.append(f"flavor {entry.flavor.name!r} ({entry.flavor.flavor_type}"
                           f"{', provider id ' + entry.flavor.provider_ref if entry.flavor.provider_ref else ''})"
                           f" for resource {entry.name}")
        if image is None:
            missing.append(f"image {entry.image.name!r} ({entry.image.flavor_type}, location {entry.image.location})"
                           f" for resource {entry.name}")
        if flavor is None or image is None:
            continue
        work.catalog[entry.name] = (flavor.id, image.id)
        if entry.name not in live.resources:
            steps.append(PlanStep(kind="resource", action="create", name=entry.name, how="create"))
            continue
        row, current = live.resources[entry.name]
        changes = _resource_changes(entry, current, (flavor.id, image.id), (row.flavor_id, row.disk_image_id))
        if changes:
            steps.append(PlanStep(kind="resource", action="change", name=entry.name, changes=changes,
                                  how="delete, then create (once the delete is done, in the same task)"))
    wanted = {e.name for e in file.resources}
    steps += [PlanStep(kind="resource", action="delete", name=name, how="delete")
              for name in live.resources if name not in wanted]

    for description in file.qkd_networks:
        if description.name not in live.networks:
            steps.append(PlanStep(kind="qkd_network", action="create", name=description.name, how="create"))
            continue
        _, current = live.networks[description.name]
        if _structure(description) != _structure(current):
            steps.append(PlanStep(kind="qkd_network", action="change", name=description.name, changes=["nodes, SAEs or links"],
                                  how="delete, then create (new KMEs, certificates and key pools)"))
        elif links := _link_changes(description, current):
            work.link_changes[description.name] = links
            steps.append(PlanStep(kind="qkd_network", action="change", name=description.name,
                                  changes=[f"{link}: {', '.join(sorted(c))}" for link, c in links.items()],
                                  how="; ".join(f"PATCH link {link}" for link in links)))
    names = {d.name for d in file.qkd_networks}
    steps += [PlanStep(kind="qkd_network", action="delete", name=name, how="delete")
              for name in live.networks if name not in names]

    now, kept = utcnow(), set()
    for entry in file.reservations:
        key = reservation_key(entry)
        match = key if key in live.reservations else next(
            (k for k, (_, e) in live.reservations.items() if k not in kept and _same_running(entry, e, now)), None)
        if match is None:
            work.reserve.append(entry)
            steps.append(PlanStep(kind="reservation", action="create", name=_reservation_name(entry),
                                  how="reserve" + (" from now (its start has passed)" if entry.start <= now else "")))
        else:
            kept.add(match)
    work.cancel = [k for k in live.reservations if k not in kept]
    steps += [PlanStep(kind="reservation", action="delete", name=_reservation_name(live.reservations[k][1]),
                       how="cancel") for k in work.cancel]
    return work
