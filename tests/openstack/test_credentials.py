"""Checking uploaded clouds.yaml files against the real keystone of the AIO cloud."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import ProviderError, TransientProviderError
from slices_blueprint.providers.endpoints import EndpointNotAllowed, EndpointPolicy
from slices_blueprint.providers.openstack.driver import OpenStackDriver
from tests.conftest import LOOPBACK_POLICY
from tests.openstack.support import AIO_CLOUD, USER_PASSWORD, Cloud

pytestmark = pytest.mark.openstack


def _with_auth(clouds_yaml: bytes, **auth: str) -> bytes:
    doc = yaml.safe_load(clouds_yaml)
    doc["clouds"][AIO_CLOUD]["auth"].update(auth)
    return yaml.safe_dump(doc).encode()


async def test_good_clouds_yaml_is_accepted(cloud: Cloud) -> None:
    assert await OpenStackDriver.validate_credential(cloud.clouds_yaml, AIO_CLOUD, LOOPBACK_POLICY) == AIO_CLOUD


async def test_a_cloud_on_a_non_public_address_needs_the_sites_permission(cloud: Cloud) -> None:
    with pytest.raises(EndpointNotAllowed, match=r"the auth_url http://127.0.0.1:5000/v3 reaches 127.0.0.1"):
        await OpenStackDriver.validate_credential(cloud.clouds_yaml, AIO_CLOUD, EndpointPolicy())
    # keystone allowed by name, but its catalog sends nova calls to 127.0.0.1: each request is checked
    by_name = _with_auth(cloud.clouds_yaml, auth_url="http://localhost:5000/v3")
    with pytest.raises(EndpointNotAllowed, match=r"the cloud endpoint http://127.0.0.1:8774/.* reaches 127.0.0.1"):
        await OpenStackDriver.validate_credential(by_name, AIO_CLOUD, EndpointPolicy(["localhost"]))
    assert await OpenStackDriver.validate_credential(by_name, AIO_CLOUD, LOOPBACK_POLICY) == AIO_CLOUD


async def test_the_only_cloud_is_chosen_when_none_is_selected(cloud: Cloud) -> None:
    assert await OpenStackDriver.validate_credential(cloud.project_clouds_yaml, None, LOOPBACK_POLICY) == "throwaway"


async def test_several_clouds_need_a_choice(cloud: Cloud) -> None:
    doc = yaml.safe_load(cloud.clouds_yaml)
    doc["clouds"]["other"] = doc["clouds"][AIO_CLOUD]
    with pytest.raises(ProviderError, match=r"several clouds \(aio, other\): choose one"):
        await OpenStackDriver.validate_credential(yaml.safe_dump(doc).encode(), None, LOOPBACK_POLICY)


async def test_bad_yaml_is_refused_without_quoting_the_file() -> None:
    broken = f"clouds:\n  aio:\n    auth: {{password: {USER_PASSWORD}\n  - oops".encode()
    with pytest.raises(ProviderError, match="not valid YAML: .* at line") as err:
        await OpenStackDriver.validate_credential(broken, None, LOOPBACK_POLICY)
    assert USER_PASSWORD not in str(err.value)


@pytest.mark.parametrize("document", [b"", b"just text", b"clouds: []", b"other: {}"])
async def test_a_document_without_clouds_is_refused(document: bytes) -> None:
    with pytest.raises(ProviderError, match="no 'clouds:' section"):
        await OpenStackDriver.validate_credential(document, None, LOOPBACK_POLICY)


async def test_unknown_cloud_names_those_present(cloud: Cloud) -> None:
    with pytest.raises(
        ProviderError, match=r"cloud 'nope' is not in clouds.yaml \(it defines: aio\)"
    ):
        await OpenStackDriver.validate_credential(cloud.clouds_yaml, "nope", LOOPBACK_POLICY)


async def test_wrong_password_is_a_401(cloud: Cloud) -> None:
    wrong = _with_auth(cloud.clouds_yaml, password="not-the-password")
    with pytest.raises(ProviderError, match=r"refused the credentials .*\(HTTP 401\)") as err:
        await OpenStackDriver.validate_credential(wrong, AIO_CLOUD, LOOPBACK_POLICY)
    assert "not-the-password" not in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auth": {"password": None}}, "incomplete .*: password is a required attribute"),
        ({"auth": {"auth_url": None}}, "not usable: .*not given: auth_url"),
        ({"auth_type": "nonsense"}, "not usable: The plugin nonsense could not be found"),
        ({"auth": {"project_name": "no-such-project"}}, r"refused the credentials .*\(HTTP 401\)"),
    ],
)
async def test_incomplete_or_wrong_settings_are_explained(
    cloud: Cloud, change: dict, message: str
) -> None:
    doc = yaml.safe_load(cloud.clouds_yaml)
    entry = doc["clouds"][AIO_CLOUD]
    for key, value in change.items():
        if key != "auth":
            entry[key] = value
    for key, value in change.get("auth", {}).items():
        entry["auth"][key] = value
    entry["auth"] = {k: v for k, v in entry["auth"].items() if v is not None}
    with pytest.raises(ProviderError, match=message):
        await OpenStackDriver.validate_credential(yaml.safe_dump(doc).encode(), AIO_CLOUD, LOOPBACK_POLICY)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_refused_auth_url_fails_fast(cloud: Cloud) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v3"
    started = time.monotonic()
    with pytest.raises(
        TransientProviderError, match=f"could not connect .*{url}.*connection refused"
    ):
        await OpenStackDriver.validate_credential(
            _with_auth(cloud.clouds_yaml, auth_url=url), AIO_CLOUD, LOOPBACK_POLICY
        )
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An auth URL whose server accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v3"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


async def test_silent_auth_url_times_out(
    cloud: Cloud, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(OpenStackDriver, "validate_timeout_s", 1.0)
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="did not answer in time|could not connect"):
        await OpenStackDriver.validate_credential(
            _with_auth(cloud.clouds_yaml, auth_url=silent_server), AIO_CLOUD, LOOPBACK_POLICY
        )
    assert time.monotonic() - started < 8


async def test_site_wide_cloud_is_used_without_a_credential(cloud: Cloud, tmp_path: Path) -> None:
    site = tmp_path / "clouds.yaml"
    site.write_bytes(cloud.clouds_yaml)
    driver = OpenStackDriver.from_settings(
        Settings(openstack_clouds_yaml=site, openstack_cloud=AIO_CLOUD), None, None
    )
    try:
        catalog = await driver.catalog()
    finally:
        await driver.close()
    assert cloud.flavor_id in {f.provider_ref for f in catalog.flavors}


def test_no_credential_and_no_site_cloud_is_explained() -> None:
    with pytest.raises(ProviderError, match="upload your clouds.yaml"):
        OpenStackDriver.from_settings(Settings(openstack_clouds_yaml=None), None, None)


def test_unreadable_site_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="site-wide clouds.yaml .* cannot be read"):
        OpenStackDriver.from_settings(
            Settings(openstack_clouds_yaml=tmp_path / "missing.yaml"), None, None
        )
