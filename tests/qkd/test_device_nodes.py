"""Device nodes: a site's real QKD devices offered in a network description.

No QKD hardware runs here, so the DEVICES ARE STAND-INS: a second service of ours whose
emulated KMEs play two vendor devices' ETSI GS QKD 014 endpoints, called with the site's
client certificates exactly as a real device would be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_of_its_own
from tests.helpers import Api
from tests.qkd.conftest import Sae, create_network, enough_keys, kme_port_range, take_sae


@pytest.fixture(scope="module")
def stand_in_devices(pg_admin_url: str, data_dir: Path, http, tmp_path_factory) -> Iterator[dict[str, Sae]]:
    """Two stand-in devices and the site's SAE credentials at each."""
    with service_of_its_own(pg_admin_url, data_dir, worker=False, qkd_kme_in_service=True,
                            qkd_kme_ports=kme_port_range(4)) as vendor:
        api = Api(vendor, http)
        token = api.token("vendor", "vendor", "vendor-lab")
        network = create_network(api, token, {
            "name": "devices",
            "nodes": [{"name": "dev-a", "saes": ["site-at-a"]}, {"name": "dev-b", "saes": ["site-at-b"]}],
            "links": [{"between": ["dev-a", "dev-b"], "length_km": 5}]})
        folder = tmp_path_factory.mktemp("site-credentials")
        yield {s: take_sae(api, token, network, s, folder) for s in ("site-at-a", "site-at-b")}


def device_settings(site: Sae) -> dict[str, Any]:
    d = site.directory
    return {"url": site.kme_url, "sae_id": site.sae_id, "client_cert": str(d / "sae.crt"),
            "client_key": str(d / "sae.key"), "ca_cert": str(d / "ca.crt")}


@pytest.fixture(scope="module")
def site_api(pg_admin_url: str, data_dir: Path, http, stand_in_devices) -> Iterator[Api]:
    devices = {"dev-a": device_settings(stand_in_devices["site-at-a"]),
               "dev-b": device_settings(stand_in_devices["site-at-b"])}
    with service_of_its_own(pg_admin_url, data_dir, worker=False, qkd_kme_in_service=True,
                            qkd_kme_ports=kme_port_range(8), qkd_devices=devices) as site:
        yield Api(site, http)


def lab(name: str) -> dict[str, Any]:
    return {"name": name,
            "nodes": [{"name": "a", "device": "dev-a", "saes": [f"{name}-a"]},
                      {"name": "b", "device": "dev-b", "saes": [f"{name}-b"]}],
            "links": [{"between": ["a", "b"]}]}


def test_device_node_against_a_stand_in_device_kme(site_api: Api, stand_in_devices, tmp_path: Path) -> None:
    token = site_api.token("alice", "qkd-lab", "qkd-lab")
    network = create_network(site_api, token, lab("lab"))
    assert [n["device"] for n in network["nodes"]] == ["dev-a", "dev-b"]
    assert network["links"][0]["state"] == "device" and network["links"][0]["emulated"] is False
    master, slave = (take_sae(site_api, token, network, s, tmp_path) for s in ("lab-a", "lab-b"))
    assert enough_keys(master, "lab-b", 1)  # the device's own pool, in our SAE_IDs
    code, status = master.client.get_status("lab-b")
    assert (status.master_sae_id, status.slave_sae_id) == ("lab-a", "lab-b")

    code, container = master.client.get_key("lab-b", number=2, size=256)
    assert code == 200, container.__dict__
    code, received = slave.client.get_key_with_key_IDs("lab-a", [k.key_id for k in container.keys])
    assert code == 200 and [k.key for k in received.keys] == [k.key for k in container.keys]
    # the device (not us) made and handed out the keys: the stand-in's own SAE sees them gone
    site_b = stand_in_devices["site-at-b"]
    code, again = site_b.client.get_key_with_key_IDs("site-at-a", [container.keys[0].key_id])
    assert code == 400 and "already delivered" in again.message
    code, again = slave.client.get_key_with_key_IDs("lab-a", [container.keys[0].key_id])
    assert code == 400 and again.message.startswith("QKD device dev-b:")
    shown = site_api.ok("GET", f"/qkd-networks/{network['id']}", token)
    assert shown["links"][0]["delivered_keys"] == 2
    site_api.ok("DELETE", f"/qkd-networks/{network['id']}", token)  # the devices are free again


def test_a_device_serves_one_network_and_its_physics_are_not_settable(site_api: Api) -> None:
    token = site_api.token("bob", "qkd-lab2", "qkd-lab2")
    network = create_network(site_api, token, lab("lab2"))
    other = site_api.token("carol", "qkd-lab3", "qkd-lab3")
    busy = site_api.call("POST", "/qkd-networks", other, json=lab("lab3"))
    assert busy.status_code == 409 and "dev-a" in busy.json()["detail"]
    fixed = site_api.call("PATCH", f"/qkd-networks/{network['id']}/links/a-b", token, json={"eavesdropper": 0.5})
    assert fixed.status_code == 409 and "real QKD devices" in fixed.json()["detail"]
    site_api.ok("DELETE", f"/qkd-networks/{network['id']}", token)
    unknown = site_api.call("POST", "/qkd-networks", other, json={
        **lab("lab3"), "nodes": [{"name": "a", "device": "dev-z"}, {"name": "b", "device": "dev-b"}]})
    assert unknown.status_code == 422 and "dev-z" in unknown.text and "dev-a, dev-b" in unknown.text
    mixed = site_api.call("POST", "/qkd-networks", other, json={
        "name": "mixed", "nodes": [{"name": "a", "device": "dev-a"}, {"name": "b"}],
        "links": [{"between": ["a", "b"]}]})
    assert mixed.status_code == 422 and "one of each" in mixed.text
    create_network(site_api, other, lab("lab3"))  # free again once deleted
