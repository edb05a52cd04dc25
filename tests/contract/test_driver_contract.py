"""The contract every compute driver keeps (``providers/base.py``), one test body run against
every provider on its real component (see ``conftest.py``): a create retried after a crash
adopts the node already tagged with the resource id, an action the provider lacks is refused
before anything is asked of the provider, a gone node's status is ``gone`` and deleting it
again succeeds."""

from __future__ import annotations

import pytest

from slices_blueprint.providers import registry
from slices_blueprint.providers.base import OPTIONAL_VERBS, ComputeDriver, NotSupported
from tests.contract.conftest import Subject


async def no_progress(percent: int, message: str) -> None:
    return None


async def tagged(driver: ComputeDriver, resource_id: str) -> int:
    """How many provider objects carry ``resource_id`` (what the reconciler sees)."""
    return sum(node.resource_id == resource_id for node in await driver.list_managed())


async def test_driver_contract(subject: Subject) -> None:
    driver, spec = subject.driver, subject.spec
    first = await driver.create(spec, no_progress)
    assert first.state == "running", first
    node = first.provider_resource_id

    # a worker that died after creating: the retried create adopts the tagged node
    again = await driver.create(spec, no_progress)
    assert (again.provider_resource_id, again.state) == (node, "running"), again
    assert await tagged(driver, spec.resource_id) == 1

    # what it lacks, it refuses up front: before the provider is asked (the node is untouched)
    lacking = [verb for verb in OPTIONAL_VERBS if verb not in driver.actions()]
    assert sorted(registry.driver_class(driver.flavor_type).actions()) == sorted(driver.actions())
    for verb in OPTIONAL_VERBS:
        assert registry.offers(driver.flavor_type, verb) == (verb not in lacking)
    for verb in lacking:
        with pytest.raises(NotSupported, match=driver.flavor_type):
            await getattr(driver, verb)(node)
    assert (await driver.status(node)).state == "running"

    await driver.delete(node, no_progress)
    assert (await driver.status(node)).state == "gone"
    await driver.delete(node, no_progress)  # already gone: success
    assert (await driver.status(node)).state == "gone"
    assert await tagged(driver, spec.resource_id) == 0
