"""The one rule for "the driver for this work": the owner's uploaded credential of the
driver's kind, else the operator's site-wide configuration.

Resource operations, the reconciler, resource logs and catalog syncs all build their driver
here (through the existing ``providers.registry`` functions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slices_blueprint.core.config import Settings
from slices_blueprint.credentials.service import plaintext_for
from slices_blueprint.providers import registry
from slices_blueprint.providers.base import ComputeDriver, ProviderError
from slices_blueprint.providers.registry import build_driver, driver_class

SITE_CLUSTER = "site"


class CallerDatabase:
    """The caller's database as a driver's :class:`SessionSource`: new transactions on the
    engine (and pool) of ``session``, the worker's or the web app's, never one of its own."""

    def __init__(self, session: AsyncSession) -> None:
        self.sessions = async_sessionmaker(session.bind, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session


async def driver_for(
    session: AsyncSession, settings: Settings, flavor_type: str, owner_id: str | None
) -> ComputeDriver:
    """The driver for work on behalf of ``owner_id`` (a resource's creator): with their
    uploaded credential when they have one, else the site's configuration."""
    kind = driver_class(flavor_type).credential_kind
    plaintext, selected = await plaintext_for(session, settings, kind, owner_id)
    return build_driver(settings, flavor_type, plaintext, selected, db=CallerDatabase(session))


async def catalog_driver_for(
    session: AsyncSession, settings: Settings, flavor_type: str, owner_id: str | None
) -> tuple[ComputeDriver, str]:
    """The driver whose catalog to import, and its cluster id: the site-wide provider's
    (cluster ``site``) when the operator configured one, else ``owner_id``'s own credential
    (its selected cluster); refused when neither exists."""
    kind = driver_class(flavor_type).credential_kind
    if kind is None or registry.site_configured(settings, flavor_type):
        return build_driver(settings, flavor_type), SITE_CLUSTER
    plaintext, selected = await plaintext_for(session, settings, kind, owner_id)
    if plaintext is None:
        raise ProviderError(f"no site-wide {flavor_type} provider is configured "
                            f"and you have no {kind} credential")
    return build_driver(settings, flavor_type, plaintext, selected), selected or SITE_CLUSTER
