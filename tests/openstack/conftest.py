"""Fixtures for the OpenStack integration tests: the real AIO cloud, real PostgreSQL.

Everything the tests create carries the session's random suffix and is removed at the end:
an image, flavors, networks (one external, with a router), a throwaway project with its
own user (for quota and default-network tests), servers, floating IPs, a scratch database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.providers.openstack.driver import OpenStackDriver
from tests.conftest import LOOPBACK_ALLOWED, fresh_database
from tests.openstack.support import (
    AIO_CLOUD,
    Cloud,
    Recorder,
)


@pytest.fixture
async def driver(cloud: Cloud) -> AsyncIterator[OpenStackDriver]:
    """Our driver as the AIO admin, built as the task layer does from an uploaded clouds.yaml."""
    drv = OpenStackDriver.from_settings(Settings(uploaded_endpoints_allowed=LOOPBACK_ALLOWED), cloud.clouds_yaml, AIO_CLOUD)
    yield drv
    await drv.close()


@pytest.fixture
async def project_driver(cloud: Cloud) -> AsyncIterator[OpenStackDriver]:
    """Our driver as the throwaway project's member (no admin rights), its only cloud."""
    drv = OpenStackDriver.from_settings(Settings(uploaded_endpoints_allowed=LOOPBACK_ALLOWED), cloud.project_clouds_yaml, None)
    yield drv
    await drv.close()


@pytest.fixture
def progress() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
async def scratch_db(pg_admin_url: str) -> AsyncIterator[Database]:
    """A fresh, migrated database on the real PostgreSQL (the shared conftest's); dropped after."""
    with fresh_database(pg_admin_url) as url:
        db = Database(url)
        try:
            yield db
        finally:
            await db.dispose()
