"""Which driver serves which flavor type; providers register themselves here."""

from __future__ import annotations

import importlib

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Invalid
from slices_blueprint.providers.base import ComputeDriver

# flavor type -> module that defines ``DRIVER``, its ComputeDriver subclass
PROVIDER_MODULES: dict[str, str] = {
    "vm": "slices_blueprint.providers.openstack",
    "k8s": "slices_blueprint.providers.kubernetes",
    "microvm": "slices_blueprint.providers.microvm",
    "test-double": "slices_blueprint.providers.test_double",
}


def enabled_types(settings: Settings) -> list[str]:
    return [t for t in settings.providers if t in PROVIDER_MODULES]


def driver_class(flavor_type: str) -> type[ComputeDriver]:
    module = importlib.import_module(PROVIDER_MODULES[flavor_type])
    return module.DRIVER


def offers(flavor_type: str, verb: str) -> bool:
    """Whether the flavor type's driver implements an optional verb (pause, stop, logs...)."""
    return getattr(driver_class(flavor_type), verb) is not getattr(ComputeDriver, verb)


def build_driver(
    settings: Settings, flavor_type: str, credential: bytes | None = None, selected: str | None = None
) -> ComputeDriver:
    """A driver for ``flavor_type``; refuses types this site has not enabled."""
    if flavor_type not in enabled_types(settings):
        raise Invalid(
            f"flavor type {flavor_type!r} is not offered by this site "
            f"(enabled: {', '.join(enabled_types(settings)) or 'none'})"
        )
    return driver_class(flavor_type).from_settings(settings, credential, selected)
