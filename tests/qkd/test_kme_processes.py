"""KMEs as processes: pools and pending keys survive a restart, and two `kme-host` processes
serving one network (sharing each KME's port) never hand out a key twice."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, wait_for
from tests.qkd.conftest import create_network, enough_keys, kme_port_range, take_sae, two_nodes

KEYS = 60


def test_pools_and_pending_keys_survive_a_restart(pg_admin_url, http, tmp_path: Path) -> None:
    ports = kme_port_range()
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(tmp_path / "data", url, free_port(), qkd_kme_in_service=True,
                                 qkd_kme_ports=ports)
        first = start_server(settings, url, worker=False)
        api = Api(first, http)
        token = api.token("alice", "demo", "qkd-restart")
        network = create_network(api, token, two_nodes("restart"))
        master, slave = (take_sae(api, token, network, s, tmp_path) for s in ("restart-a", "restart-b"))
        wait_for(lambda: enough_keys(master, "restart-b", 3), 20, "the pool filling")
        code, container = master.client.get_key("restart-b", number=1)
        assert code == 200
        delivered_before = api.ok("GET", f"/qkd-networks/{network['id']}", token)["links"][0]["delivered_keys"]
        first.stop()

        second = start_server(settings, url, worker=False)  # same port: same dev token issuer
        try:
            wait_for(lambda: enough_keys(slave, "restart-a", 0), 20, "the KMEs serving again",
                     ignoring=(requests.exceptions.ConnectionError,))
            code, received = slave.client.get_key_with_key_IDs("restart-a", [container.keys[0].key_id])
            assert code == 200 and received.keys[0].key == container.keys[0].key
            shown = Api(second, http).ok("GET", f"/qkd-networks/{network['id']}", token)
            assert shown["links"][0]["delivered_keys"] == delivered_before == 1
        finally:
            second.stop()


def kme_host(data_dir: Path, url: str, ports: tuple[int, int], log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
           "SLICES_BLUEPRINT_QKD_KME_PORTS": f"[{ports[0]}, {ports[1]}]",
           "SLICES_BLUEPRINT_QKD_KME_REUSE_PORT": "true", "SLICES_BLUEPRINT_LOG_LEVEL": "INFO"}
    return subprocess.Popen([sys.executable, "-m", "slices_blueprint", "kme-host"], env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT)


def test_two_kme_processes_never_hand_out_a_key_twice(pg_admin_url, http, tmp_path: Path) -> None:
    ports = kme_port_range()
    data = tmp_path / "data"
    with fresh_database(pg_admin_url) as url:
        server = start_server(make_settings(data, url, free_port(), qkd_kme_ports=ports,
                                            qkd_kme_reuse_port=True), url, worker=False)
        logs = [tmp_path / "kme-host-1.log", tmp_path / "kme-host-2.log"]
        hosts = [kme_host(data, url, ports, log) for log in logs]
        try:
            api = Api(server, http)
            token = api.token("alice", "demo", "qkd-race")
            network = create_network(api, token, two_nodes("race", max_key_count=10_000))
            master, slave = (take_sae(api, token, network, s, tmp_path) for s in ("race-a", "race-b"))
            wait_for(lambda: enough_keys(master, "race-b", KEYS), 30, "the pool filling")
            with ThreadPoolExecutor(8) as pool:  # masters racing for the pool, on both processes
                answers = list(pool.map(lambda _: master.client.get_key("race-b", number=1), range(KEYS)))
            assert [code for code, _ in answers] == [200] * KEYS
            sent = {c.keys[0].key_id: c.keys[0].key for _, c in answers}
            assert len(sent) == KEYS and len(set(sent.values())) == KEYS  # no index taken twice

            def fetch(key_id: str) -> tuple[str, int, str | None]:
                code, data = slave.client.get_key_with_key_IDs("race-a", [key_id])
                return key_id, code, data.keys[0].key if code == 200 else None

            with ThreadPoolExecutor(8) as pool:  # every key asked for twice at once
                results = list(pool.map(fetch, [k for k in sent for _ in range(2)]))
            served = collections.Counter(k for k, code, _ in results if code == 200)
            assert served == collections.Counter(dict.fromkeys(sent, 1))
            assert all(material == sent[k] for k, code, material in results if code == 200)
            assert {code for _, code, _ in results} == {200, 400}
            for log in logs:  # both processes took part
                text = log.read_text()
                assert "qkd.keys.handed_out" in text or "qkd.keys.delivered" in text, text[-2000:]
        finally:
            for host in hosts:
                host.terminate()
                host.wait(15)
            server.stop()
