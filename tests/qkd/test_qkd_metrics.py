"""QKD networks in Prometheus: link and KME gauges on the service's ``/metrics``, scraped over
HTTP, and the KMEs' key and refusal counters, in ``serve`` and on a ``kme-host``'s own port."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, wait_for
from tests.qkd.conftest import (
    create_network,
    enough_keys,
    kme_port_range,
    listening,
    take_sae,
    two_nodes,
)
from tests.qkd.test_kme_processes import kme_host

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: httpx.Client, url: str) -> Samples:
    """Every sample at ``url`` (a Prometheus text page), by name and labels."""
    response = http.get(url)
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_link_and_kme_metrics_follow_the_network(qkd_live, api: Api, http: httpx.Client, tmp_path: Path) -> None:
    token = api.token("alice", "qkd-metrics", "qkd-metrics")
    network = create_network(api, token, two_nodes("metered", max_key_count=500))
    master, slave = (take_sae(api, token, network, s, tmp_path) for s in ("metered-a", "metered-b"))
    kmes = {n["name"]: n for n in network["nodes"]}
    wait_for(lambda: enough_keys(master, "metered-b", 3), 20, "the pool filling")
    code, container = master.client.get_key("metered-b", number=3)
    assert code == 200
    key_ids = [k.key_id for k in container.keys]
    assert slave.client.get_key_with_key_IDs("metered-a", key_ids[:2])[0] == 200
    assert slave.client.get_key_with_key_IDs("metered-a", key_ids[:1])[0] == 400  # already delivered

    metrics = f"{qkd_live.url}/metrics"
    link = {"network_id": network["id"], "network": "metered", "experiment_id": network["experiment_id"],
            "link": "alice-bob"}
    samples = scrape(http, metrics)
    assert value(samples, "qkd_link_generating", **link) == 1
    assert value(samples, "qkd_link_secret_key_rate_bps", **link) > 1000
    assert 0 < value(samples, "qkd_link_qber", **link) < 0.11
    assert value(samples, "qkd_link_max_keys", **link) == 500
    assert value(samples, "qkd_link_delivered_keys", **link) == 3
    assert 0 <= value(samples, "qkd_link_stored_keys", **link) <= 500
    for node in ("alice", "bob"):
        kme_id = kmes[node]["kme_id"]
        info = {k: v for k, v in link.items() if k != "link"}
        assert value(samples, "qkd_kme_info", **info, kme_id=kme_id, node=node, url=kmes[node]["kme_url"]) == 1
        assert value(samples, "qkd_kme_serving", kme_id=kme_id) == 1
    alice, bob = kmes["alice"]["kme_id"], kmes["bob"]["kme_id"]
    assert value(samples, "qkd_kme_keys_total", kme_id=alice, operation="enc") == 3
    assert value(samples, "qkd_kme_keys_total", kme_id=bob, operation="dec") == 2
    assert value(samples, "qkd_kme_refusals_total", kme_id=bob, status="400") == 1

    api.ok("PATCH", f"/qkd-networks/{network['id']}/links/alice-bob", token, json={"eavesdropper": 0.6})
    assert master.client.get_key("metered-b")[0] == 503
    samples = scrape(http, metrics)
    assert value(samples, "qkd_link_generating", **link) == 0
    assert value(samples, "qkd_link_qber", **link) > 0.11
    assert value(samples, "qkd_link_secret_key_rate_bps", **link) == 0
    assert value(samples, "qkd_kme_refusals_total", kme_id=alice, status="503") == 1

    api.ok("DELETE", f"/qkd-networks/{network['id']}", token)
    samples = scrape(http, metrics)
    assert not [key for key in samples if ("network_id", network["id"]) in key[1]]

    def forgotten() -> bool:  # once the KME has stopped, its counters go too
        return not [key for key in scrape(http, metrics) if ("kme_id", alice) in key[1]]

    wait_for(forgotten, 20, "the stopped KME's series leaving /metrics")
    assert not listening(kmes["alice"]["kme_url"])


def test_kme_host_serves_its_counters_on_a_loopback_port(
        pg_admin_url: str, http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports, metrics_port = kme_port_range(), free_port()
    monkeypatch.setenv("SLICES_BLUEPRINT_QKD_KME_METRICS_PORT", str(metrics_port))
    data = tmp_path / "data"
    with fresh_database(pg_admin_url) as url:
        server = start_server(make_settings(data, url, free_port(), qkd_kme_ports=ports), url, worker=False)
        host = kme_host(data, url, ports, tmp_path / "kme-host.log")
        try:
            api = Api(server, http)
            token = api.token("alice", "demo", "qkd-kme-host-metrics")
            network = create_network(api, token, two_nodes("hosted"))
            master = take_sae(api, token, network, "hosted-a", tmp_path)
            wait_for(lambda: enough_keys(master, "hosted-b", 1), 20, "the pool filling")
            assert master.client.get_key("hosted-b")[0] == 200
            kme_id = next(n["kme_id"] for n in network["nodes"] if n["name"] == "alice")
            samples = scrape(http, f"http://127.0.0.1:{metrics_port}/metrics")
            assert value(samples, "qkd_kme_serving", kme_id=kme_id) == 1
            assert value(samples, "qkd_kme_keys_total", kme_id=kme_id, operation="enc") == 1
            on_service = scrape(http, f"{server.url}/metrics")  # the service runs no KME here
            assert value(on_service, "qkd_kme_serving", kme_id=kme_id) is None
            assert value(on_service, "qkd_link_delivered_keys", network_id=network["id"], network="hosted",
                         experiment_id=network["experiment_id"], link="alice-bob") == 1
        finally:
            host.terminate()
            host.wait(15)
            server.stop()
