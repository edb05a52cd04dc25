"""What other domains add to a machine when it is created or reset: files to place in it and
services it may reach (a QKD network's SAE credentials and its KME, for instance).

``resources/`` may not import those domains, so they register a contributor here
(``domains.wire()`` does); :func:`contributions` asks each of them, in the operation's own
transaction, for the machine being provisioned.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import GuestFile, GuestService


@dataclass(frozen=True)
class Machine:
    """The machine being provisioned, as a contributor sees it."""

    resource_id: uuid.UUID
    resource_ref: str  # its TypeID, as the API shows it
    experiment_id: str
    name: str  # its friendly name, unique among the experiment's live resources
    provider: str
    forwards_services: bool  # whether the provider forwards GuestServices into it
    task_id: uuid.UUID  # the create or reset under way


@dataclass(frozen=True)
class Provisioning:
    files: tuple[GuestFile, ...] = ()
    services: tuple[GuestService, ...] = ()


Contributor = Callable[[AsyncSession, Settings, Machine], Awaitable[Provisioning]]
_contributors: dict[str, Contributor] = {}


def register_contributor(name: str, contributor: Contributor) -> None:
    """Add (or replace) the contributor called ``name``; idempotent."""
    _contributors[name] = contributor


async def contributions(session: AsyncSession, settings: Settings, machine: Machine) -> Provisioning:
    """Every registered contributor's files and services for ``machine``, in name order."""
    files: list[GuestFile] = []
    services: list[GuestService] = []
    for name in sorted(_contributors):
        part = await _contributors[name](session, settings, machine)
        files += part.files
        services += part.services
    return Provisioning(tuple(files), tuple(services))
