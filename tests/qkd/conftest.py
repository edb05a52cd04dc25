"""A service of its own with KMEs running in it, and SAEs as real ETSI 014 clients."""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from etsi_qkd_014_client import QKD014Client

from slices_blueprint.core.database import Database
from tests.conftest import service_of_its_own
from tests.helpers import Api, wait_for


def kme_port_range(size: int = 40) -> tuple[int, int]:
    """``size`` consecutive ports below the ephemeral range that nobody holds now (the KMEs'
    range for one service)."""
    while True:
        start = random.randrange(20000, 30000 - size)
        if all(_free(port) for port in range(start, start + size)):
            return start, start + size - 1


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def qkd_live(pg_admin_url: str, data_dir: Path) -> Iterator[Any]:
    with service_of_its_own(pg_admin_url, data_dir, worker=True, qkd_kme_in_service=True,
                            qkd_kme_ports=kme_port_range(), qkd_max_kmes_per_project=6) as server:
        yield server


@pytest.fixture(scope="module")
def api(qkd_live, http) -> Api:
    return Api(qkd_live, http)


@pytest.fixture
async def db(qkd_live: Any) -> AsyncIterator[Database]:
    """The live service's database, for reading and changing its rows directly."""
    database = Database(qkd_live.settings.database_url, pool_size=2)
    yield database
    await database.dispose()


def listening(url: str) -> bool:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host.strip("[]"), int(port))) == 0


@dataclass
class Sae:
    """An SAE's credentials on disk and an ETSI 014 client (the third-party package) for it."""

    sae_id: str
    kme_url: str
    directory: Path

    @property
    def client(self) -> QKD014Client:
        d = self.directory
        return QKD014Client(self.kme_url.removeprefix("https://"), str(d / "sae.crt"), str(d / "sae.key"),
                            str(d / "ca.crt"))


def create_network(api: Api, token: str, description: dict) -> dict:
    network = api.ok("POST", "/qkd-networks", token, 201, json=description)
    for node in network["nodes"]:
        wait_for(lambda u=node["kme_url"]: listening(u), 20, f"KME {node['kme_id']} listening")
    return network


def take_sae(api: Api, token: str, network: dict, sae_id: str, directory: Path) -> Sae:
    creds = api.ok("POST", f"/qkd-networks/{network['id']}/saes/{sae_id}/credentials", token)
    d = directory / f"{sae_id}-{uuid.uuid4().hex[:6]}"
    d.mkdir(parents=True)
    (d / "sae.crt").write_text(creds["certificate_pem"])
    (d / "sae.key").write_text(creds["private_key_pem"])
    (d / "ca.crt").write_text(creds["ca_certificate_pem"])
    return Sae(sae_id, creds["kme_url"], d)


def two_nodes(name: str, **link: Any) -> dict:
    return {"name": name,
            "nodes": [{"name": "alice", "saes": [f"{name}-a"]}, {"name": "bob", "saes": [f"{name}-b"]}],
            "links": [{"between": ["alice", "bob"], "length_km": 10, **link}]}


def enough_keys(master: Sae, slave_id: str, count: int) -> bool:
    """The master's KME has at least ``count`` keys for the slave now."""
    code, status = master.client.get_status(slave_id)
    assert code == 200, status.__dict__
    return status.stored_key_count >= count
