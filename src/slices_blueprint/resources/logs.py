"""A resource's log (a pod's container log, a microVM's console), for the API and the UI."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import BadGateway, Conflict, NotFound
from slices_blueprint.credentials.drivers import driver_for
from slices_blueprint.providers.base import NotSupported, ProviderError
from slices_blueprint.resources.models import ComputeResource

DEFAULT_TAIL = 200


async def read_logs(session: AsyncSession, settings: Settings, resource: ComputeResource,
                    tail: int = DEFAULT_TAIL) -> str:
    """The last ``tail`` lines of the resource's log.

    Refused with 409 when the resource has no provider node (not created yet, or deleted),
    404 when its provider keeps no logs, 502 when the provider fails to answer.
    """
    if not resource.provider_resource_id or resource.status == "deleted":
        raise Conflict(f"resource {resource.friendly_name!r} has no {resource.provider} node "
                       f"{'any more' if resource.status == 'deleted' else 'yet'}",
                       current_status=resource.status)
    driver = await driver_for(session, settings, resource.provider, resource.created_by)
    try:
        return await driver.logs(resource.provider_resource_id, tail)
    except NotSupported as exc:
        raise NotFound(f"no logs: {exc}") from exc
    except ProviderError as exc:
        raise BadGateway(str(exc)) from exc
    finally:
        await driver.close()
