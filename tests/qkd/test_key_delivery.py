"""ETSI GS QKD 014 key delivery through our KMEs, over real mutual TLS, with the third-party
`etsi-qkd-014-client` package as the master and slave SAEs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.helpers import Api, wait_for
from tests.qkd.conftest import create_network, enough_keys, listening, take_sae, two_nodes


def exp_token(api: Api, experiment: str) -> str:
    """A token for an experiment in a project of its own (the KME quota is per project)."""
    return api.token("alice", experiment, experiment)


def test_master_and_slave_get_the_same_key_once(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-pair")
    network = create_network(api, token, two_nodes("pair"))
    master, slave = (take_sae(api, token, network, s, tmp_path) for s in ("pair-a", "pair-b"))
    assert master.kme_url != slave.kme_url
    wait_for(lambda: enough_keys(master, "pair-b", 4), 20, "the link filling the pool")

    code, status = master.client.get_status("pair-b")
    assert code == 200
    assert (status.master_sae_id, status.slave_sae_id) == ("pair-a", "pair-b")
    assert status.source_kme_id != status.target_kme_id and status.key_size == 256

    code, container = master.client.get_key("pair-b", number=2, size=256)
    assert code == 200, container.__dict__
    sent = {k.key_id: k.key for k in container.keys}
    assert len(sent) == 2 and all(len(base64.b64decode(k)) == 32 for k in sent.values())

    code, received = slave.client.get_key_with_key_IDs("pair-a", list(sent))
    assert code == 200, received.__dict__
    assert {k.key_id: k.key for k in received.keys} == sent

    code, again = slave.client.get_key_with_key_IDs("pair-a", list(sent)[:1])
    assert code == 400 and "already delivered" in again.message


def test_key_relayed_across_three_nodes(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-chain")
    network = create_network(api, token, {
        "name": "chain",
        "nodes": [{"name": "a", "saes": ["chain-a"]}, {"name": "b"}, {"name": "c", "saes": ["chain-c"]}],
        "links": [{"between": ["a", "b"], "length_km": 5}, {"between": ["b", "c"], "length_km": 5}]})
    master, slave = take_sae(api, token, network, "chain-a", tmp_path), take_sae(api, token, network, "chain-c", tmp_path)
    wait_for(lambda: enough_keys(master, "chain-c", 1), 20, "both links filling their pools")
    code, container = master.client.get_key("chain-c", number=1, size=512)
    assert code == 200, container.__dict__
    code, received = slave.client.get_key_with_key_IDs("chain-a", [container.keys[0].key_id])
    assert code == 200 and received.keys[0].key == container.keys[0].key
    shown = api.ok("GET", f"/qkd-networks/{network['id']}", token)
    assert [link["delivered_keys"] for link in shown["links"]] == [1, 1]  # every hop spent key


def test_sae_of_another_experiment_is_refused(api: Api, tmp_path: Path) -> None:
    ours, theirs = exp_token(api, "qkd-ours"), exp_token(api, "qkd-theirs")
    network = create_network(api, ours, two_nodes("iso"))
    other = create_network(api, theirs, two_nodes("iso-other"))
    master = take_sae(api, ours, network, "iso-a", tmp_path)
    intruder = take_sae(api, theirs, other, "iso-other-a", tmp_path)
    intruder.kme_url = master.kme_url  # their valid certificate, presented to our KME
    with pytest.raises(requests.exceptions.SSLError):
        intruder.client.get_key("iso-b")
    assert api.call("GET", f"/qkd-networks/{network['id']}", theirs).status_code == 404
    assert api.call("POST", f"/qkd-networks/{network['id']}/saes/iso-b/credentials", theirs).status_code == 404


def test_sae_at_the_wrong_kme_is_unauthorised(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-wrong-kme")
    network = create_network(api, token, two_nodes("wrong"))
    slave = take_sae(api, token, network, "wrong-b", tmp_path)
    slave.kme_url = next(n["kme_url"] for n in network["nodes"] if n["name"] == "alice")
    code, error = slave.client.get_key("wrong-a")
    assert code == 401 and "not attached" in error.message


def test_credentials_are_handed_out_once(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-once")
    network = create_network(api, token, two_nodes("once"))
    take_sae(api, token, network, "once-a", tmp_path)
    again = api.call("POST", f"/qkd-networks/{network['id']}/saes/once-a/credentials", token)
    assert again.status_code == 409 and "once only" in again.json()["detail"]
    shown = api.ok("GET", f"/qkd-networks/{network['id']}", token)
    assert [s["credentials_downloaded"] for s in shown["saes"]] == [True, False]


def test_eavesdropper_stops_key_delivery_until_lowered(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-eve")
    network = create_network(api, token, two_nodes("eve"))
    master = take_sae(api, token, network, "eve-a", tmp_path)
    wait_for(lambda: enough_keys(master, "eve-b", 1), 20, "the pool filling")
    shown = api.ok("PATCH", f"/qkd-networks/{network['id']}/links/bob-alice", token, json={"eavesdropper": 0.6})
    link = shown["links"][0]
    assert link["state"] == "stopped" and link["qber"] > 0.11 and "QBER" in link["state_reason"]
    code, error = master.client.get_key("eve-b")
    assert code == 503 and "not generating" in error.message
    shown = api.ok("PATCH", f"/qkd-networks/{network['id']}/links/alice-bob", token, json={"eavesdropper": 0})
    assert shown["links"][0]["state"] == "generating"
    code, container = master.client.get_key("eve-b")
    assert code == 200 and len(container.keys) == 1


def test_bad_requests_get_etsi_errors(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-bad")
    network = create_network(api, token, two_nodes("bad"))
    master = take_sae(api, token, network, "bad-a", tmp_path)
    code, error = master.client.get_key("bad-b", number=1, size=100)  # not a multiple of 8
    assert code == 400 and error.details
    code, error = master.client.get_key("nobody")
    assert code == 400 and "not in this QKD network" in error.message
    code, error = master.client.get_key_with_key_IDs("bad-b", ["00000000-0000-4000-8000-000000000000"])
    assert code == 400


def test_bad_descriptions_are_refused_with_the_field_named(api: Api) -> None:
    token = exp_token(api, "qkd-invalid")
    bad = two_nodes("invalid")
    bad["links"][0]["between"] = ["alice", "carol"]
    answer = api.call("POST", "/qkd-networks", token, json=bad)
    assert answer.status_code == 422 and "carol" in answer.text
    answer = api.call("POST", "/qkd-networks", token, json=two_nodes("invalid", length_km=-3))
    assert answer.status_code == 422 and "length_km" in answer.text
    create_network(api, token, two_nodes("dup"))
    assert api.call("POST", "/qkd-networks", token, json=two_nodes("dup")).status_code == 409
    assert api.call("POST", "/qkd-networks", api.token("alice"), json=two_nodes("user")).status_code == 403


def test_deleted_network_stops_its_kmes(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-delete")
    network = create_network(api, token, two_nodes("gone"))
    master = take_sae(api, token, network, "gone-a", tmp_path)
    assert api.ok("DELETE", f"/qkd-networks/{network['id']}", token)["status"] == "deleted"
    wait_for(lambda: not listening(master.kme_url), 20, "the KME to stop")
    assert api.ok("GET", "/qkd-networks", token) == []


def test_network_expires_with_its_lifetime_and_extend_never_shortens(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-expiry")
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=20)
    network = create_network(api, token, {**two_nodes("brief"), "expires_at": expires.isoformat()})
    master = take_sae(api, token, network, "brief-a", tmp_path)
    path = f"/qkd-networks/{network['id']}"
    earlier = api.ok("POST", f"{path}/extend", token, json={"expires_at": (now + dt.timedelta(seconds=15)).isoformat()})
    assert dt.datetime.fromisoformat(earlier["expires_at"]) == expires and not earlier["capped"]
    assert "unchanged" in earlier["reason"]
    other = api.call("POST", f"{path}/extend", exp_token(api, "qkd-not-mine"), json={"duration_hours": 1})
    assert other.status_code == 404
    capped = api.ok("POST", f"/qkd-networks/{(created := create_network(api, token, two_nodes('long')))['id']}/extend",
                    token, json={"duration_hours": 24 * 365})
    assert capped["capped"] and dt.datetime.fromisoformat(capped["expires_at"]) > dt.datetime.fromisoformat(created["expires_at"])

    def reaped() -> bool:
        return api.ok("GET", path, token)["status"] == "deleted"

    wait_for(reaped, 45, "the reaper deleting the expired network")
    wait_for(lambda: not listening(master.kme_url), 20, "its KMEs stopping")
    events = api.ok("GET", "/qkd-networks", token)
    assert [n["name"] for n in events] == ["long"]


def test_kmes_per_project_are_capped(api: Api) -> None:
    token = exp_token(api, "qkd-quota")  # the test service allows 6 KMEs per project
    networks = [create_network(api, token, two_nodes(f"q{i}")) for i in range(3)]
    refused = api.call("POST", "/qkd-networks", token, json=two_nodes("q3"))
    assert refused.status_code == 403 and "6 KMEs used + 2 requested > 6 allowed" in refused.json()["detail"]
    api.ok("DELETE", f"/qkd-networks/{networks[0]['id']}", token)
    create_network(api, token, two_nodes("q3"))


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "qkd"


@pytest.mark.parametrize("example", ["two-nodes.yaml", "three-nodes.yaml"])
def test_documented_examples_make_generating_networks(api: Api, example: str) -> None:
    token = exp_token(api, f"qkd-example-{example.split('.')[0]}")
    network = create_network(api, token, yaml.safe_load((EXAMPLES / example).read_text()))
    assert all(link["state"] == "generating" and link["secret_key_rate_bps"] > 1e6 for link in network["links"])


def test_the_documented_curl_calls_work(api: Api, tmp_path: Path) -> None:
    """USER.md's curl lines, as written, against our KMEs."""
    token = exp_token(api, "qkd-curl")
    network = create_network(api, token, yaml.safe_load((EXAMPLES / "two-nodes.yaml").read_text()))
    alice, bob = (take_sae(api, token, network, s, tmp_path) for s in ("alice-app", "bob-app"))
    wait_for(lambda: enough_keys(alice, "bob-app", 1), 20, "the pool filling")

    def curl(sae, *args: str) -> dict:
        d = sae.directory
        done = subprocess.run(["curl", "-sS", "--fail-with-body", "--cert", str(d / "sae.crt"), "--key", str(d / "sae.key"),
                               "--cacert", str(d / "ca.crt"), *args], check=False, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)

    sent = curl(alice, f"{alice.kme_url}/api/v1/keys/bob-app/enc_keys?number=1&size=256")["keys"][0]
    got = curl(bob, "-H", "Content-Type: application/json", "-d", json.dumps({"key_IDs": [{"key_ID": sent["key_ID"]}]}),
               f"{bob.kme_url}/api/v1/keys/alice-app/dec_keys")["keys"][0]
    assert got == sent


def test_multicast_key_reaches_every_slave_once(api: Api, tmp_path: Path) -> None:
    token = exp_token(api, "qkd-multicast")
    network = create_network(api, token, {
        "name": "star",
        "nodes": [{"name": "hub", "saes": ["star-hub"]}, {"name": "b", "saes": ["star-b"]},
                  {"name": "c", "saes": ["star-c"]}],
        "links": [{"between": ["hub", "b"], "length_km": 5}, {"between": ["hub", "c"], "length_km": 5}]})
    hub, b, c = (take_sae(api, token, network, s, tmp_path) for s in ("star-hub", "star-b", "star-c"))
    wait_for(lambda: enough_keys(hub, "star-b", 1) and enough_keys(hub, "star-c", 1), 20, "both pools filling")
    code, container = hub.client.get_key("star-b", number=1, size=256, additional_slave_sae_ids=["star-c"])
    assert code == 200, container.__dict__
    key = container.keys[0]
    for slave in (b, c):
        code, got = slave.client.get_key_with_key_IDs("star-hub", [key.key_id])
        assert code == 200 and got.keys[0].key == key.key
        code, again = slave.client.get_key_with_key_IDs("star-hub", [key.key_id])
        assert code == 400 and "already delivered" in again.message
    shown = api.ok("GET", f"/qkd-networks/{network['id']}", token)
    assert [link["delivered_keys"] for link in shown["links"]] == [1, 1]  # the key travelled both links
