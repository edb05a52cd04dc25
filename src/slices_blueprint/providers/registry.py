"""Which driver serves which flavor type, and the provider facts everything else asks for.

Providers register here (one line in :data:`PROVIDER_MODULES`); the API, the UI, the
catalog and the credentials domain derive what they need from the driver classes, so adding a
provider touches only ``providers/``. The CLI, a thin HTTP client, names no provider: the
service answers which kinds exist.
"""

from __future__ import annotations

import importlib

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Invalid, NotFound
from slices_blueprint.providers.base import ComputeDriver, SessionSource

# flavor type -> module that defines ``DRIVER``, its ComputeDriver subclass
PROVIDER_MODULES: dict[str, str] = {
    "vm": "slices_blueprint.providers.openstack.driver",
    "k8s": "slices_blueprint.providers.kubernetes.driver",
    "microvm": "slices_blueprint.providers.microvm.driver",
    "test-double": "slices_blueprint.providers.test_double.driver",
}


def enabled_types(settings: Settings) -> list[str]:
    return [t for t in settings.providers if t in PROVIDER_MODULES]


def driver_class(flavor_type: str) -> type[ComputeDriver]:
    module = importlib.import_module(PROVIDER_MODULES[flavor_type])
    return module.DRIVER


def offers(flavor_type: str, verb: str) -> bool:
    """Whether the flavor type's driver implements an optional verb (pause, stop, logs...)."""
    return verb in driver_class(flavor_type).actions()


def site_configured(settings: Settings, flavor_type: str) -> bool:
    """Whether the operator configured a site-wide provider for ``flavor_type``."""
    return driver_class(flavor_type).site_configured(settings)


def credential_kinds() -> dict[str, type[ComputeDriver]]:
    """Every uploadable credential kind and the driver that checks and uses it."""
    classes = (driver_class(t) for t in PROVIDER_MODULES)
    return {c.credential_kind: c for c in classes if c.credential_kind is not None}


def credential_driver(kind: str) -> type[ComputeDriver]:
    """The driver of credential ``kind``; :class:`NotFound` naming the known kinds."""
    kinds = credential_kinds()
    if kind not in kinds:
        raise NotFound(f"no credential kind {kind!r} (known: {', '.join(kinds)})")
    return kinds[kind]


def build_driver(
    settings: Settings, flavor_type: str, credential: bytes | None = None,
    selected: str | None = None, *, db: SessionSource | None = None,
) -> ComputeDriver:
    """A driver for ``flavor_type``; refuses types this site has not enabled. ``db``: the
    calling process's database (the microVM driver needs it for host placement)."""
    if flavor_type not in enabled_types(settings):
        raise Invalid(
            f"flavor type {flavor_type!r} is not offered by this site "
            f"(enabled: {', '.join(enabled_types(settings)) or 'none'})"
        )
    return driver_class(flavor_type).from_settings(settings, credential, selected, db=db)
