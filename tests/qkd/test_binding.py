"""SAEs bound to the experiment's machines: their credentials and the path to their KME reach
the driver of the bound machine only (the TEST DOUBLE provider records what it was asked),
work against the real KME over mutual TLS, and are never downloadable. Also through a
separate `slices-blueprint worker` process, which must wire the domains' hooks itself."""

from __future__ import annotations

import json
import signal
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, wait_for
from tests.qkd.conftest import Sae, create_network, take_sae
from tests.test_crash import start_worker

SAE_FILES = ["sae.crt", "sae.key", "ca.crt", "kme.env"]


def bound_network(name: str, machine: str) -> dict:
    return {"name": name,
            "nodes": [{"name": "alice", "saes": [{"id": f"{name}-a", "machine": machine}]},
                      {"name": "bob", "saes": [f"{name}-b"]}],
            "links": [{"between": ["alice", "bob"], "length_km": 5}]}


def nodes_asked(data_dir: Path) -> dict[str, dict[str, Any]]:
    """What the test-double driver was asked, by resource id."""
    nodes = (json.loads(p.read_text()) for p in (data_dir / "test-double").glob("*.json"))
    return {n["resource_id"]: n for n in nodes}


def machines(api: Api, token: str, names: list[str], flavor: str, image: str) -> dict[str, str]:
    """Create test-double machines; answer name -> resource id once they run."""
    task = api.create(token, names, flavor, image)
    assert api.wait_task(token, task["id"])["status"] == "succeeded"
    return {r["friendly_name"]: r["id"] for r in api.ok("GET", "/resources", token)}


def sae_of(node: dict[str, Any], sae_id: str, kme_url: str, directory: Path) -> Sae:
    """The SAE as its machine would run it, from the files the driver was asked to place."""
    files = {f["path"]: f for f in node["files"]}
    assert sorted(files) == sorted(f"/etc/qkd/{sae_id}/{n}" for n in SAE_FILES)
    assert files[f"/etc/qkd/{sae_id}/sae.key"]["mode"] == 0o600
    directory.mkdir(parents=True)
    for path, f in files.items():
        (directory / Path(path).name).write_text(f["content"])
    return Sae(sae_id, kme_url, directory)


def test_credentials_reach_the_bound_machine_only_and_work(api: Api, qkd_live, tmp_path: Path) -> None:
    token, other = api.token("alice", "qkd-bind", "qkd-bind"), api.token("alice", "qkd-bind2", "qkd-bind2")
    network = create_network(api, token, bound_network("bound", "vm-a"))
    path = f"/qkd-networks/{network['id']}"
    sae = next(s for s in network["saes"] if s["sae_id"] == "bound-a")
    assert sae["machine"] == "vm-a" and sae["delivery"]["state"] == "waiting"
    assert "no machine named 'vm-a'" in sae["delivery"]["note"]
    refused = api.call("POST", f"{path}/saes/bound-a/credentials", token)
    assert refused.status_code == 409 and "bound to machine 'vm-a'" in refused.json()["detail"]

    flavor, image = api.test_double_catalog()
    mine = machines(api, token, ["vm-a", "vm-b"], flavor, image)
    theirs = machines(api, other, ["vm-a"], flavor, image)
    asked = nodes_asked(qkd_live.settings.data_dir)
    for unbound in (mine["vm-b"], theirs["vm-a"]):  # another machine; another experiment's namesake
        assert (asked[unbound]["files"], asked[unbound]["guest_services"]) == ([], [])
    node = asked[mine["vm-a"]]
    alice = next(n for n in network["nodes"] if n["name"] == "alice")
    port = int(alice["kme_url"].rsplit(":", 1)[1])
    hostname = f"{alice['kme_id']}.qkd.internal"
    assert node["guest_services"] == [{"hostname": hostname, "port": 443, "target_host": "127.0.0.1",
                                       "target_port": port}]
    env = next(f["content"] for f in node["files"] if f["path"].endswith("kme.env"))
    assert f"KME_URL=https://{hostname}\n" in env and "SAE_ID=bound-a\n" in env and "PEER_SAE_IDS=bound-b\n" in env

    machine_sae = sae_of(node, "bound-a", alice["kme_url"], tmp_path / "in-vm-a")
    cert = x509.load_pem_x509_certificate((machine_sae.directory / "sae.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bound-a"
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((machine_sae.directory / "ca.crt").read_bytes()))
    code, status = machine_sae.client.get_status("bound-b")  # real mutual TLS with the placed files
    assert code == 200 and (status.master_sae_id, status.slave_sae_id) == ("bound-a", "bound-b")
    kme_cert = x509.load_pem_x509_certificate(
        ssl.get_server_certificate(("127.0.0.1", port)).encode())
    assert hostname in kme_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName)

    shown = next(s for s in api.ok("GET", path, token)["saes"] if s["sae_id"] == "bound-a")["delivery"]
    assert (shown["state"], shown["resource_id"]) == ("delivered", mine["vm-a"]) and shown["delivered_at"]
    assert shown["note"] == "/etc/qkd/bound-a/ in machine 'vm-a'"
    assert take_sae(api, token, network, "bound-b", tmp_path).sae_id == "bound-b"  # unbound: downloadable
    assert api.call("POST", f"{path}/saes/bound-a/credentials", token).status_code == 409  # still never


def test_a_machine_older_than_its_network_gets_the_credentials_at_reset(api: Api, qkd_live) -> None:
    token = api.token("alice", "qkd-late", "qkd-late")
    flavor, image = api.test_double_catalog()
    rid = machines(api, token, ["early"], flavor, image)["early"]
    network = create_network(api, token, bound_network("late", "early"))
    (sae,) = [s for s in network["saes"] if s["sae_id"] == "late-a"]
    assert sae["delivery"] == {"state": "waiting", "resource_id": rid, "delivered_at": None,
                               "note": "machine 'early' was created before the network: reset it to deliver "
                                       "the credentials"}
    assert nodes_asked(qkd_live.settings.data_dir)[rid]["files"] == []

    assert api.wait_task(token, api.ok("POST", f"/resources/{rid}/reset", token, 202)["id"])["status"] == "succeeded"
    node = nodes_asked(qkd_live.settings.data_dir)[rid]
    assert node["resets"] == 1 and sorted(f["path"] for f in node["files"]) == sorted(
        f"/etc/qkd/late-a/{n}" for n in SAE_FILES)
    shown = api.ok("GET", f"/qkd-networks/{network['id']}", token)
    assert next(s for s in shown["saes"] if s["sae_id"] == "late-a")["delivery"]["state"] == "delivered"


def test_a_separate_worker_process_delivers_too(pg_admin_url: str, http, tmp_path: Path) -> None:
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(tmp_path, url, free_port(), providers=["test-double"])
        server = start_server(settings, url, worker=False)  # the API alone; the worker is a process
        worker = start_worker(tmp_path, url, settings.site_id, tmp_path / "worker.log")
        try:
            api = Api(server, http)
            token = api.token("alice", "qkd-worker", "qkd-worker")
            api.ok("POST", "/qkd-networks", token, 201, json=bound_network("proc", "vm-w"))
            flavor, image = api.test_double_catalog()
            task = api.create(token, ["vm-w"], flavor, image)
            done = wait_for(lambda: (t := api.ok("GET", f"/tasks/{task['id']}", token))["status"] == "succeeded"
                            and t, 60, lambda: (tmp_path / "worker.log").read_text()[-2000:])
            (node,) = nodes_asked(tmp_path).values()
            assert done and sorted(f["path"] for f in node["files"]) == sorted(f"/etc/qkd/proc-a/{n}" for n in SAE_FILES)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            server.stop()
