"""The resource lifecycle over real HTTP, a real PostgreSQL and the real queue/worker,
with the TEST DOUBLE provider standing in for a cloud."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import time
import uuid

import psycopg
import pytest

from slices_blueprint.core.database import Database
from slices_blueprint.core.errors import PROBLEM_DESCRIPTIONS, PROBLEM_JSON
from slices_blueprint.core.ids import parse_id
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.resources import views as resource_views
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.scheduled import reconcile
from tests.conftest import service_of_its_own
from tests.helpers import Api


@pytest.fixture(scope="module")
def api(live, http) -> Api:
    return Api(live, http)


@pytest.fixture(scope="module")
def catalog(api: Api) -> tuple[str, str]:
    return api.test_double_catalog()


def exp_token(api: Api, experiment: str = "exp1", **kw) -> str:
    return api.token("alice", "demo", experiment, **kw)


def test_create_batch_runs_and_reports_progress(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "batch")
    task = api.create(token, ["vm-a", "vm-b", "vm-c"], flavor, image, {"delay_s": 0.5})
    assert task["kind"] == "batch" and task["status"] in ("pending", "running") and len(task["resource_ids"]) == 3
    done = api.wait_task(token, task["id"])
    assert done["status"] == "succeeded" and done["completed"] == 100
    assert [s["status"] for s in done["subtasks"]] == ["succeeded"] * 3
    resources = api.ok("GET", "/resources", token)
    assert sorted(r["friendly_name"] for r in resources) == ["vm-a", "vm-b", "vm-c"]
    for resource in resources:
        assert resource["status"] == "running"
        assert resource["access"]["ssh_user"] == "debian"
        assert resource["ssh_command"].startswith("ssh debian@198.51.100.")
        assert resource["id"].startswith("resource_test-site1_")


def test_same_request_id_answers_the_same_task_and_creates_nothing_more(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "idem")
    request_id = str(uuid.uuid4())
    first = api.create(token, ["only-one"], flavor, image, request_id=request_id)
    second = api.create(token, ["only-one"], flavor, image, request_id=request_id)
    assert first["id"] == second["id"]
    api.wait_task(token, first["id"])
    assert len(api.ok("GET", "/resources", token)) == 1
    other = api.call("POST", "/resources", token, json={"request_id": request_id, "resources": [
        {"friendly_name": "different", "flavor_id": flavor, "disk_image_id": image}]})
    assert other.status_code == 409 and "different request" in other.json()["detail"]


def test_experiments_are_isolated(api: Api, catalog) -> None:
    flavor, image = catalog
    mine, theirs = exp_token(api, "iso-a"), api.token("eve", "other", "iso-b")
    task = api.create(mine, ["private"], flavor, image)
    api.wait_task(mine, task["id"])
    rid = task["resource_ids"][0]
    assert api.ok("GET", "/resources", theirs) == []
    assert api.call("GET", f"/resources/{rid}", theirs).status_code == 404  # as if missing
    assert api.call("DELETE", f"/resources/{rid}", theirs).status_code == 404
    assert api.call("GET", f"/tasks/{task['id']}", theirs).status_code == 404
    # a user token reads (its projects), never writes
    reader = api.token("alice", "demo")
    assert rid in [r["id"] for r in api.ok("GET", "/resources", reader)]
    assert api.call("DELETE", f"/resources/{rid}", reader).status_code == 403


def test_delete_is_idempotent_and_ends_deleted(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "del")
    task = api.create(token, ["doomed"], flavor, image)
    api.wait_task(token, task["id"])
    rid = task["resource_ids"][0]
    first = api.ok("DELETE", f"/resources/{rid}", token, 202)
    again = api.ok("DELETE", f"/resources/{rid}", token, 202)
    assert first["id"] == again["id"]
    assert api.wait_task(token, first["id"])["status"] == "succeeded"
    assert api.ok("GET", f"/resources/{rid}", token)["status"] == "deleted"
    assert api.ok("DELETE", f"/resources/{rid}", token, 202)["id"] == first["id"]
    assert api.ok("GET", "/resources", token) == []
    assert len(api.ok("GET", "/resources", token, params={"include_deleted": True})) == 1
    # the name is free again once deleted
    api.wait_task(token, api.create(token, ["doomed"], flavor, image)["id"])


def test_impossible_transitions_are_409(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "trans")
    task = api.create(token, ["slow"], flavor, image, {"delay_s": 3})
    rid = task["resource_ids"][0]
    response = api.call("POST", f"/resources/{rid}/resume", token)
    assert response.status_code == 409 and response.json()["current_status"] in ("pending", "provisioning")
    api.wait_task(token, task["id"])
    deleting = api.ok("DELETE", f"/resources/{rid}", token, 202)
    assert api.call("POST", f"/resources/{rid}/reset", token).status_code == 409
    api.wait_task(token, deleting["id"])


def test_reset_pause_resume_stop_start(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "ops")
    task = api.create(token, ["box"], flavor, image)
    api.wait_task(token, task["id"])
    rid = task["resource_ids"][0]
    steps = (("reset", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopped"),
             ("reset", "running"), ("stop", "stopped"), ("start", "running"))
    for action, state in steps:
        op = api.ok("POST", f"/resources/{rid}/{action}", token, 202)
        assert op["kind"] == action
        assert api.wait_task(token, op["id"])["status"] == "succeeded", action
        assert api.ok("GET", f"/resources/{rid}", token)["status"] == state
        if state == "stopped":
            refused = api.call("POST", f"/resources/{rid}/pause", token)
            assert refused.status_code == 409 and refused.json()["current_status"] == "stopped"
    actions = [e["action"] for e in api.ok("GET", f"/resources/{rid}/events", token)]
    assert actions.count("resource.reset") == 4 and actions.count("resource.stop") == 4
    assert "resource.start" in actions and actions[-1] == "resource.create"


def test_provider_failure_becomes_error_with_reason(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "fail")
    task = api.create(token, ["broken"], flavor, image, {"fail": "quota exceeded for instances"})
    done = api.wait_task(token, task["id"])
    assert done["status"] == "failed" and "quota exceeded" in done["error"]
    resource = api.ok("GET", f"/resources/{task['resource_ids'][0]}", token)
    assert resource["status"] == "error" and resource["status_reason"] == "quota exceeded for instances"


def test_transient_failures_are_retried(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "flaky")
    task = api.create(token, ["flaky"], flavor, image, {"transient_failures": 1})
    done = api.wait_task(token, task["id"], timeout=90)
    assert done["status"] == "succeeded"
    assert api.ok("GET", f"/resources/{task['resource_ids'][0]}", token)["status"] == "running"


def test_too_many_transient_failures_give_up_with_reason(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "flakier")
    task = api.create(token, ["hopeless"], flavor, image, {"transient_failures": 10})
    done = api.wait_task(token, task["id"], timeout=120)
    assert done["status"] == "failed" and "gave up after 3 attempts" in done["error"]


def test_expiry_is_capped_by_the_experiment(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "short", experiment_days=2)
    too_late = (dt.datetime.now(dt.UTC) + dt.timedelta(days=5)).isoformat()
    response = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "expires_at": too_late,
                        "resources": [{"friendly_name": "x", "flavor_id": flavor, "disk_image_id": image}]})
    assert response.status_code == 422 and "experiment's expiry" in response.json()["detail"]
    task = api.create(token, ["ext"], flavor, image)
    api.wait_task(token, task["id"])
    rid = task["resource_ids"][0]
    granted = api.ok("POST", f"/resources/{rid}/extend", token, json={"duration_hours": 24 * 10})
    assert granted["capped"] is True and granted["reason"].startswith("capped at the experiment's expiry 20")
    assert dt.datetime.fromisoformat(granted["expires_at"]) < dt.datetime.now(dt.UTC) + dt.timedelta(days=2, minutes=1)
    small = api.ok("POST", f"/resources/{rid}/extend", token, json={"duration_hours": 1})
    assert small["capped"] is False and small["reason"].endswith("is later than asked: unchanged")
    assert small["expires_at"] == granted["expires_at"]  # never earlier


def test_extend_never_shortens_a_lifetime(api: Api, catalog) -> None:
    """The README's example: extending a 24 h resource by 8 h keeps its 24 h; asking for
    more than it has grants that, as asked."""
    flavor, image = catalog
    token = exp_token(api, "extend-more")
    rid = api.create(token, ["long"], flavor, image)["resource_ids"][0]  # the default 24 h lifetime
    before = dt.datetime.fromisoformat(api.ok("GET", f"/resources/{rid}", token)["expires_at"])
    kept = api.ok("POST", f"/resources/{rid}/extend", token, json={"duration_hours": 8})
    assert dt.datetime.fromisoformat(kept["expires_at"]) == before
    assert dt.datetime.fromisoformat(kept["requested_expires_at"]) < before
    assert kept["reason"] == f"the current expiry {before:%Y-%m-%d %H:%M} UTC is later than asked: unchanged"
    assert api.ok("GET", f"/resources/{rid}", token)["expires_at"] == kept["expires_at"]
    longer = api.ok("POST", f"/resources/{rid}/extend", token, json={"duration_hours": 48})
    assert longer["reason"] == "as asked" and longer["capped"] is False
    assert longer["expires_at"] == longer["requested_expires_at"]
    assert dt.datetime.fromisoformat(longer["expires_at"]) > before + dt.timedelta(hours=23)
    outcomes = [e["outcome"] for e in api.ok("GET", f"/resources/{rid}/events", token)
                if e["action"] == "resource.extend"]
    assert outcomes == ["ok", "unchanged"]  # newest first


def test_a_resource_whose_create_failed_is_deleted_at_once_and_its_name_freed(api: Api) -> None:
    """The issue's case: a VM on a site with no OpenStack fails; deleting it asks nothing of
    the (missing) provider, and the name can be used again."""
    admin = api.token("admin")
    suffix = uuid.uuid4().hex[:6]
    flavor = api.ok("POST", "/flavors", admin, 201, json={
        "friendly_name": f"vm.small-{suffix}", "flavor_type": "vm", "vcpus": 1, "ram_mib": 512, "disk_mb": 1024})
    image = api.ok("POST", "/disk-images", admin, 201, json={
        "friendly_name": f"cirros-{suffix}", "flavor_type": "vm", "location": f"cirros-{suffix}"})
    token = exp_token(api, "no-cloud")
    for attempt in range(2):  # the second time under the same name: no 409
        task = api.create(token, ["vm1"], flavor["id"], image["id"])
        assert api.wait_task(token, task["id"])["status"] == "failed"
        rid = task["resource_ids"][0]
        failed = api.ok("GET", f"/resources/{rid}", token)
        assert failed["status"] == "error" and "no OpenStack cloud" in failed["status_reason"], failed
        assert failed["provider_resource_id"] is None
        deleted = api.ok("DELETE", f"/resources/{rid}", token, 202)
        assert deleted["status"] == "succeeded" and "no vm node had been made" in deleted["message"]
        assert api.ok("GET", f"/resources/{rid}", token)["status"] == "deleted"
        assert api.ok("DELETE", f"/resources/{rid}", token, 202)["id"] == deleted["id"]  # idempotent
    assert api.ok("GET", "/resources", token) == []


def test_a_delete_the_provider_never_answers_frees_the_name_as_a_possible_orphan(
        api: Api, catalog, live, database_url) -> None:
    """After its retries, the delete ends ``deleted`` (the name free) with the reason on the
    resource and ``resource.possible_orphan`` in the audit trail; once the provider answers
    again, the reconciler deletes the node that was left."""
    flavor, image = catalog
    token = exp_token(api, "unreachable")
    task = api.create(token, ["stuck"], flavor, image, {"unreachable_on_delete": True})
    assert api.wait_task(token, task["id"])["status"] == "succeeded"
    rid = task["resource_ids"][0]
    node = api.ok("GET", f"/resources/{rid}", token)["provider_resource_id"]
    done = api.wait_task(token, api.ok("DELETE", f"/resources/{rid}", token, 202)["id"], timeout=90)
    assert done["status"] == "succeeded" and f"test-double node {node} may remain" in done["message"]
    gone = api.ok("GET", f"/resources/{rid}", token)
    assert gone["status"] == "deleted" and "provider unreachable (gave up after 3 attempts)" in gone["status_reason"]
    warning = [e for e in api.ok("GET", f"/resources/{rid}/events", token) if e["action"] == "resource.possible_orphan"]
    assert len(warning) == 1 and warning[0]["detail"]["provider_resource_id"] == node
    assert api.wait_task(token, api.create(token, ["stuck"], flavor, image)["id"])["status"] == "succeeded"

    path = live.settings.data_dir / "test-double" / f"{node}.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"unreachable_on_delete": False}))  # it answers again

    async def reconcile_now() -> dict[str, int]:
        db = Database(database_url)
        try:
            settings = live.settings.model_copy(update={"orphan_grace_minutes": 0})
            return await reconcile(Runtime(settings=settings, db=db))
        finally:
            await db.dispose()

    assert asyncio.run(reconcile_now())["orphans_deleted"] >= 1
    assert not path.exists()


def test_a_create_waits_for_an_expected_place_longer_than_its_attempts(api: Api, catalog) -> None:
    """A place expected soon (a host starting) is waited for by time, not attempts: 9 s of
    waiting take more tries than ``task_max_attempts`` (3 here) allows failures."""
    flavor, image = catalog
    token = exp_token(api, "awaiting")
    task = api.create(token, ["patient"], flavor, image, {"placement_after_s": 9})
    time.sleep(3)
    waiting = api.ok("GET", f"/tasks/{task['id']}", token)["subtasks"][0]
    assert waiting["status"] == "running" and "no place for the node yet" in waiting["message"]
    assert api.wait_task(token, task["id"], timeout=60)["status"] == "succeeded"


def test_the_wait_for_a_place_is_bounded(pg_admin_url, tmp_path, http) -> None:
    with service_of_its_own(pg_admin_url, tmp_path, placement_wait_seconds=3) as server:
        api = Api(server, http)
        flavor, image = api.test_double_catalog()
        token = exp_token(api, "impatient")
        clock = time.monotonic()
        task = api.create(token, ["never"], flavor, image, {"placement_after_s": 600})
        done = api.wait_task(token, task["id"], timeout=30)
        assert done["status"] == "failed" and "(none within 3 s)" in done["error"]
        assert time.monotonic() - clock < 20


def test_bad_input_is_refused_and_nothing_is_written(api: Api, catalog, database_url) -> None:
    flavor, image = catalog
    token = exp_token(api, "bad")
    cases = [
        ({"resources": [{"friendly_name": "Bad_Name", "flavor_id": flavor, "disk_image_id": image}]}, "friendly_name"),
        ({"resources": [{"friendly_name": "a", "flavor_id": "flavor_x", "disk_image_id": image}]}, "flavor_id"),
        ({"resources": [{"friendly_name": "a", "flavor_id": flavor, "disk_image_id": image, "ssh_authorized_keys": ["hello"]}]}, "OpenSSH"),
        ({"resources": [{"friendly_name": "a", "flavor_id": flavor, "disk_image_id": image},
                        {"friendly_name": "a", "flavor_id": flavor, "disk_image_id": image}]}, "repeated"),
        ({"resources": []}, "resources"),
    ]
    for body, expected in cases:
        response = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), **body})
        assert response.status_code == 422, body
        assert expected in response.text
    # a valid first item with an invalid second: the whole request is refused
    response = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "resources": [
        {"friendly_name": "good", "flavor_id": flavor, "disk_image_id": image},
        {"friendly_name": "bad", "flavor_id": flavor, "disk_image_id": "image_test-site1_01kzzzzzzzzzzzzzzzzzzzzzzz"}]})
    assert response.status_code == 422
    assert api.ok("GET", "/resources", token) == []
    with psycopg.connect(database_url) as conn:
        experiment = api.ok("GET", "/resources", token)  # noqa: F841 - the call upserts the experiment
        rows = conn.execute("SELECT count(*) FROM tasks t JOIN experiments e ON e.id = t.experiment_id WHERE e.name = 'bad'").fetchone()
    assert rows == (0,)


def test_live_names_are_unique_per_experiment(api: Api, catalog) -> None:
    flavor, image = catalog
    token = exp_token(api, "names")
    api.wait_task(token, api.create(token, ["same"], flavor, image)["id"])
    response = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "resources": [
        {"friendly_name": "same", "flavor_id": flavor, "disk_image_id": image}]})
    assert response.status_code == 409 and "same" in response.json()["detail"]


def test_missing_token_is_401_problem(api: Api) -> None:
    response = api.call("GET", "/resources", None)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                               "detail": "a bearer token is required (Authorization: Bearer <jwt>)"}


def test_user_token_in_body_adds_ssh_key_and_creator(api: Api, catalog) -> None:
    flavor, image = catalog
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz1 carol@laptop"
    token = api.token("carol", "demo", "keys")
    user = api.token("carol", "demo", ssh_key=key)
    task = api.create(token, ["keyed"], flavor, image, tokens=[{"jwt": user}])
    api.wait_task(token, task["id"])
    resource = api.ok("GET", f"/resources/{task['resource_ids'][0]}", token)
    assert resource["created_by"].startswith("user_dev.local_")
    bogus = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "tokens": [{"jwt": "x.y.z"}],
                     "resources": [{"friendly_name": "k2", "flavor_id": flavor, "disk_image_id": image}]})
    assert bogus.status_code == 401


def test_openapi_is_served_under_the_bi_prefix(live, http) -> None:
    spec = http.get(f"{live.bi}/openapi.json").json()
    assert "/apis/bi.slices.eu/v1alpha2/resources" in spec["paths"]
    assert "/apis/bi.slices.eu/v1alpha2/tasks/{task_id}" in spec["paths"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("OPTIONS", "/api/v1/hosts/enrolments", "POST"),  # not also /hosts/{host_id}'s DELETE
    ("OPTIONS", "/api/v1/hosts/host_x", "DELETE"),
    ("PUT", "/apis/bi.slices.eu/v1alpha2/resources/res_x", "DELETE, GET"),  # two routes, one path
    ("PATCH", "/apis/bi.slices.eu/v1alpha2/resources", "GET, POST"),
    ("POST", "/", "GET"),  # a web UI route
])
def test_a_405_allows_the_methods_of_its_path_and_only_those(live, http, method: str, path: str, allowed: str) -> None:
    answer = http.request(method, f"{live.url}{path}")
    assert (answer.status_code, answer.headers.get("allow")) == (405, allowed)


def test_every_operation_documents_the_problems_any_may_answer(live, http) -> None:
    """Each domain's router declares the problem-details answers (its routes are added to
    the app as they are, where an included router took them from the app): a router made
    without them, or a 422 left as the framework's own schema, fails here."""
    spec = http.get(f"{live.bi}/openapi.json").json()
    operations = [(method, path, operation) for path, item in spec["paths"].items()
                  for method, operation in item.items()]
    assert len(operations) > 50
    for method, path, operation in operations:
        responses = operation["responses"]
        missing = [status for status in PROBLEM_DESCRIPTIONS if str(status) not in responses]
        assert not missing, f"{method.upper()} {path} does not document {missing}"
        for status in PROBLEM_DESCRIPTIONS:
            assert PROBLEM_JSON in responses[str(status)].get("content", {}), f"{method.upper()} {path} {status}"


def test_wait_for_a_state(api: Api, catalog) -> None:
    """GET /resources/{id}/wait answers once the state is reached, 409 when the resource
    settles otherwise (with the reason), 408 when the timeout passes first."""
    flavor, image = catalog
    token = exp_token(api, "waits")
    slow = api.create(token, ["slow"], flavor, image, {"delay_s": 2})["resource_ids"][0]
    started = time.monotonic()
    reached = api.ok("GET", f"/resources/{slow}/wait", token, params={"state": "running", "timeout": 30})
    assert reached["status"] == "running" and time.monotonic() - started < 20
    other = api.call("GET", f"/resources/{slow}/wait", token, params={"state": "stopped"})
    assert other.status_code == 409 and other.json()["current_status"] == "running"
    slower = api.create(token, ["slower"], flavor, image, {"delay_s": 8})["resource_ids"][0]
    late = api.call("GET", f"/resources/{slower}/wait", token, params={"timeout": 1})
    assert late.status_code == 408 and late.json()["current_status"] in ("pending", "provisioning")
    broken = api.create(token, ["broken"], flavor, image, {"fail": "no capacity in zone b"})["resource_ids"][0]
    failed = api.call("GET", f"/resources/{broken}/wait", token, params={"state": "running", "timeout": 30})
    assert failed.status_code == 409 and "is error: no capacity in zone b" in failed.json()["detail"]
    stranger = api.call("GET", f"/resources/{slow}/wait", exp_token(api, "someone-else"))
    assert stranger.status_code == 404  # as if missing


def test_a_wait_wakes_on_a_change_made_elsewhere(api: Api, catalog, database_url, monkeypatch) -> None:
    """A wait is woken by the change's notification, not by reading again: a status written
    over another connection (as another replica or a worker would) answers the wait at once,
    although its fallback read is a minute away."""
    monkeypatch.setattr(resource_views, "WAIT_FALLBACK_SECONDS", 60)
    flavor, image = catalog
    token = exp_token(api, "woken")
    rid = api.create(token, ["woken"], flavor, image)["resource_ids"][0]
    assert api.ok("GET", f"/resources/{rid}/wait", token, params={"timeout": 30})["status"] == "running"
    row_id = parse_id(rid, "resource")

    async def set_status(status: str) -> None:
        db = Database(database_url)  # a connection pool of its own, like another process
        try:
            async with db.session() as session:
                (await session.get(ComputeResource, row_id)).status = status
        finally:
            await db.dispose()

    asyncio.run(set_status("stopping"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.call, "GET", f"/resources/{rid}/wait", token, params={"state": "stopped", "timeout": 60})
        time.sleep(1)  # the wait is subscribed and waiting
        assert not waiting.done()
        changed = time.monotonic()
        asyncio.run(set_status("stopped"))
        answer = waiting.result(timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "stopped"
    assert time.monotonic() - changed < 3, "the wait was not woken by the change"
