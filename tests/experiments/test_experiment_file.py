"""The experiment as one file, over real HTTP on real PostgreSQL with the test-double provider."""

from __future__ import annotations

import copy
import datetime as dt
import json

from tests.experiments.conftest import NETWORK, SSH_KEY, ExpApi


def test_round_trip_and_idempotence(api: ExpApi, catalog: tuple[str, str]) -> None:
    token = api.experiment(*catalog)
    first = api.export(token)
    assert [r["name"] for r in first["resources"]] == ["db", "web"]
    web = first["resources"][1]
    assert web["image"]["location"] == "td-debian-12-exp" and web["flavor"]["name"] == "td.small-exp"
    assert web["ssh_authorized_keys"] == [SSH_KEY] and web["network_interfaces"] == ["lab"]
    assert web["userdata"].startswith("#cloud-config") and web["request_config"] == {"note": "a"}
    assert first["qkd_networks"][0]["links"][0]["length_km"] == 25
    assert len(first["reservations"]) == 1 and first["reservations"][0]["duration_hours"] == 3
    assert api.plan(token, first) == {"steps": [], "missing": []}

    api.delete_everything(token)
    assert api.export(token) == {"schema_version": 1, "resources": [], "qkd_networks": [], "reservations": []}
    planned = api.plan(token, first)["steps"]
    assert sorted((s["kind"], s["action"]) for s in planned) == [
        ("qkd_network", "create"), ("reservation", "create"), ("resource", "create"), ("resource", "create")]
    applied = api.apply(token, first)
    assert len(applied["task"]["subtasks"]) == 2
    assert api.export(token) == first

    again = api.apply(token, first)
    assert again["plan"]["steps"] == [] and again["task"]["subtasks"] == []
    assert api.export(token) == first


def test_plan_shows_create_change_delete(api: ExpApi, catalog: tuple[str, str]) -> None:
    token = api.experiment(*catalog)
    file = api.export(token)
    edited = copy.deepcopy(file)
    edited["resources"] = [r for r in edited["resources"] if r["name"] != "db"]  # delete db
    edited["resources"][0]["userdata"] = "#cloud-config\npackages: [htop]\n"  # change web
    edited["resources"].append({**edited["resources"][0], "name": "cache", "userdata": None})  # create cache
    edited["qkd_networks"][0]["links"][0]["length_km"] = 40  # PATCH the link
    steps = {(s["kind"], s["name"]): s for s in api.plan(token, edited)["steps"]}
    assert {k: s["action"] for k, s in steps.items()} == {
        ("resource", "web"): "change", ("resource", "cache"): "create", ("resource", "db"): "delete",
        ("qkd_network", "pair"): "change"}
    assert steps[("resource", "web")]["changes"] == ["userdata"]
    assert steps[("resource", "web")]["how"].startswith("delete, then create")
    assert steps[("qkd_network", "pair")]["how"] == "PATCH link alice-bob"
    assert api.export(token) == file  # planning changed nothing

    old_web = next(r for r in api.ok("GET", "/resources", token) if r["friendly_name"] == "web")
    applied = api.apply(token, edited)  # one round: web's create waits for its delete, in the task answered
    assert api.plan(token, edited)["steps"] == []
    assert api.export(token) == {**edited, "resources": sorted(edited["resources"], key=lambda r: r["name"])}
    task = api.ok("GET", f"/tasks/{applied['task']['id']}", token)
    kinds = sorted((s["kind"], s["status"]) for s in task["subtasks"])
    assert kinds == [("create", "succeeded")] * 2 + [("delete", "succeeded")] * 2  # cache, web; db, old web
    web = next(r for r in api.ok("GET", "/resources", token) if r["friendly_name"] == "web")
    assert web["id"] != old_web["id"] and web["status"] == "running"
    assert api.ok("GET", f"/resources/{old_web['id']}", token)["status"] == "deleted"
    by_resource = {(s["resource_id"], s["kind"]): s for s in task["subtasks"]}
    deleted = dt.datetime.fromisoformat(by_resource[(old_web["id"], "delete")]["finished_at"])
    assert dt.datetime.fromisoformat(by_resource[(web["id"], "create")]["created_at"]) >= deleted
    assert by_resource[(old_web["id"], "delete")]["result"] == {}  # what waited there (the userdata) is not shown
    network = api.ok("GET", "/qkd-networks", token)[0]
    assert network["links"][0]["parameters"]["length_km"] == 40


def test_missing_flavor_refused_nothing_changed(api: ExpApi, catalog: tuple[str, str]) -> None:
    token = api.experiment(*catalog)
    file = api.export(token)
    edited = copy.deepcopy(file)
    edited["resources"][0]["flavor"].update(name="gpu.huge", provider_ref=None)
    edited["resources"].pop()
    edited["qkd_networks"] = []
    plan = api.plan(token, edited)
    assert plan["missing"] == ["flavor 'gpu.huge' (test-double) for resource db"]
    refused = api.call("POST", "/experiment/apply", token, json=edited)
    assert refused.status_code == 422 and "gpu.huge" in refused.json()["detail"]
    assert refused.json()["missing"] == plan["missing"]
    assert api.export(token) == file


def test_no_secret_in_the_file(api: ExpApi, catalog: tuple[str, str]) -> None:
    token = api.experiment(*catalog)
    network = api.ok("GET", "/qkd-networks", token)[0]
    taken = api.ok("POST", f"/qkd-networks/{network['id']}/saes/alice-app/credentials", token)
    text = json.dumps(api.export(token)) + json.dumps(api.ok("GET", "/experiment/record", token))
    for secret in ("BEGIN", "PRIVATE", token, taken["private_key_pem"].splitlines()[1]):
        assert secret not in text
    assert NETWORK["name"] in text


def test_other_experiments_untouched(api: ExpApi, catalog: tuple[str, str]) -> None:
    mine, theirs = api.experiment(*catalog), api.experiment(*catalog)
    before = api.export(theirs)
    api.apply(mine, {"schema_version": 1})
    assert api.export(mine)["resources"] == [] and api.export(theirs) == before


def test_a_network_whose_credentials_went_into_a_machine_exports_and_applies(api: ExpApi,
                                                                          catalog: tuple[str, str]) -> None:
    token = api.experiment(*catalog)
    api.ok("POST", "/qkd-networks", token, 201, json={
        "name": "bound", "nodes": [{"name": "a", "saes": [{"id": "bound-a", "machine": "web"}]},
                                   {"name": "b", "saes": ["bound-b"]}],
        "links": [{"between": ["a", "b"], "length_km": 5}]})
    web = next(r for r in api.ok("GET", "/resources", token) if r["friendly_name"] == "web")
    api.wait_task(token, api.ok("POST", f"/resources/{web['id']}/reset", token, 202)["id"])
    network = next(n for n in api.ok("GET", "/qkd-networks", token) if n["name"] == "bound")
    assert network["saes"][0]["delivery"]["state"] == "delivered"  # the network's record names the delivery
    file = api.export(token)
    (bound,) = [n for n in file["qkd_networks"] if n["name"] == "bound"]
    assert bound["nodes"][0]["saes"] == [{"id": "bound-a", "machine": "web"}]
    assert api.plan(token, file)["steps"] == []


def test_a_file_the_document_refuses_is_refused(api: ExpApi, catalog: tuple[str, str]) -> None:
    """What the API fuzzer found accepted by a plan (200): a key that is no OpenSSH key (the
    document's pattern was never checked) and ``false`` for a flavor's size (pydantic read it
    as 0); both are 422s naming the field, as ``POST /resources`` answers a bad key."""
    token = api.experiment(*catalog)
    file = api.export(token)
    for field, value in (("ssh_authorized_keys", ["not a key"]), ("flavor", {**file["resources"][0]["flavor"], "disk_mb": False}),
                         ("flavor", {**file["resources"][0]["flavor"], "vcpus": True})):
        edited = copy.deepcopy(file)
        edited["resources"][0][field] = value
        for step in ("plan", "apply"):
            refused = api.call("POST", f"/experiment/{step}", token, json=edited)
            assert refused.status_code == 422, (field, value, refused.text)
            assert field in refused.json()["detail"], refused.json()
    assert api.export(token) == file
