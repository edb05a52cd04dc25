"""No existence oracle: with real tokens of other experiments, another experiment's resource
(and its task) answers exactly what a missing one does on every per-resource route, and
hidden catalog entries answer non-admins exactly what missing ones do."""

from __future__ import annotations

import uuid

import pytest

from slices_blueprint.core.ids import format_id
from tests.helpers import Api

ROUTES = [
    ("GET", "/resources/{id}", None),
    ("DELETE", "/resources/{id}", None),
    *[
        ("POST", f"/resources/{{id}}/{action}", None)
        for action in ("reset", "pause", "resume", "stop", "start")
    ],
    ("POST", "/resources/{id}/extend", {"duration_hours": 1}),
    ("GET", "/resources/{id}/wait?timeout=1", None),
    ("GET", "/resources/{id}/events", None),
    ("GET", "/resources/{id}/logs", None),
    ("GET", "/resources/{id}/metrics", None),
]


@pytest.fixture(scope="module")
def api(live, http) -> Api:
    return Api(live, http)


@pytest.fixture(scope="module")
def victim(api: Api) -> tuple[str, str, str]:
    """A running resource of one experiment: (its token, resource id, its create task id)."""
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "iso-victims", "iso-private")
    task = api.create(token, ["secret"], flavor, image)
    api.wait_task(token, task["id"])
    return token, task["resource_ids"][0], task["id"]


def strangers(api: Api) -> dict[str, str]:
    return {
        "experiment of another project": api.token("mallory", "iso-attackers", "iso-probe"),
        "other experiment, same project": api.token("alice", "iso-victims", "iso-sibling"),
        "user of another project": api.token("mallory", "iso-attackers"),
    }


def answer(api: Api, method: str, path: str, token: str, body: dict | None) -> tuple[int, dict]:
    response = api.call(method, path, token, json=body)
    return response.status_code, response.json()


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_experiments_resource_answers_like_a_missing_one(
    api: Api, victim, method, path, body
) -> None:
    owner, rid, _ = victim
    missing = format_id("resource", api.live.settings.site_id, uuid.uuid4())
    for who, token in strangers(api).items():
        theirs = answer(api, method, path.format(id=rid), token, body)
        nothing = answer(api, method, path.format(id=missing), token, body)
        assert theirs == nothing, who
        assert theirs[0] == 404 and theirs[1]["detail"] == "no such resource", who
    assert api.call("GET", f"/resources/{rid}", owner).status_code == 200  # it does exist
    assert (
        api.ok("GET", f"/resources/{rid}", owner)["status"] == "running"
    )  # and no probe changed it


def test_another_experiments_task_answers_like_a_missing_one(api: Api, victim) -> None:
    owner, _, task = victim
    missing = format_id("task", api.live.settings.site_id, uuid.uuid4())
    for who, token in strangers(api).items():
        assert answer(api, "GET", f"/tasks/{task}", token, None) == answer(
            api, "GET", f"/tasks/{missing}", token, None
        ), who
        assert api.call("GET", f"/tasks/{task}", token).status_code == 404
    assert api.call("GET", f"/tasks/{task}", owner).status_code == 200


def test_hidden_catalog_entries_answer_non_admins_like_missing_ones(api: Api) -> None:
    admin = api.token("admin")
    flavor, image = api.test_double_catalog()
    for path, entry in (("/flavors", flavor), ("/disk-images", image)):
        api.ok("PATCH", f"{path}/{entry}", admin, json={"hidden": True})
        kind = "flavor" if path == "/flavors" else "image"
        missing = format_id(kind, api.live.settings.site_id, uuid.uuid4())
        for token in (
            api.token("mallory", "iso-attackers"),
            api.token("mallory", "iso-attackers", "iso-probe"),
        ):
            hidden = answer(api, "GET", f"{path}/{entry}", token, None)
            assert hidden == answer(api, "GET", f"{path}/{missing}", token, None)
            assert hidden[0] == 404
            for query in ("", "?include_hidden=true"):
                assert entry not in [e["id"] for e in api.ok("GET", f"{path}{query}", token)]
        assert api.ok("GET", f"{path}/{entry}", admin)["hidden"] is True  # admins still see it
        assert entry in [e["id"] for e in api.ok("GET", f"{path}?include_hidden=true", admin)]
