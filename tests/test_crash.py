"""Crash safety: SIGKILL the worker while it creates 20 resources, start a new one, and
every resource still ends in exactly one final state, none lost, none created twice.

Real processes (``slices-blueprint worker``), a real PostgreSQL, the real queue; the
TEST DOUBLE provider counts how often each node was really created."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, wait_for

COUNT = 20


def start_worker(data_dir: Path, database_url: str, site_id: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
           "SLICES_BLUEPRINT_DEV_MODE": "true", "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]',
           "SLICES_BLUEPRINT_SITE_ID": site_id, "SLICES_BLUEPRINT_LOG_LEVEL": "INFO"}
    return subprocess.Popen([sys.executable, "-m", "slices_blueprint", "worker", "--concurrency", "4"],
                            env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)


@pytest.fixture()
def crash_site(pg_admin_url, tmp_path):
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(tmp_path, url, free_port(), providers=["test-double"])
        server = start_server(settings, url, worker=False)  # the API alone; workers are processes
        yield server, url, tmp_path
        server.stop()


def test_sigkill_worker_mid_batch_loses_nothing_and_creates_nothing_twice(crash_site, http) -> None:
    server, url, data_dir = crash_site
    api = Api(server, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "crash")
    names = [f"node-{i:02d}" for i in range(COUNT)]
    task = api.create(token, names, flavor, image, {"delay_s": 2})
    log = data_dir / "worker.log"

    def mid_batch(worker: subprocess.Popen) -> bool:
        """Some creates done and others running (each takes 2 s): the moment to kill."""
        assert worker.poll() is None, log.read_text()[-2000:]
        statuses = {s["status"] for s in api.ok("GET", f"/tasks/{task['id']}", token)["subtasks"]}
        return {"succeeded", "running"} <= statuses

    in_flight: list[dict] = []
    for _ in range(3):  # a kill can land just as a wave of creates ends (none running): the next wave
        worker = start_worker(data_dir, url, server.settings.site_id, log)
        wait_for(lambda w=worker: mid_batch(w), 120,
                 lambda: f"some creates done, others running: {log.read_text()[-2000:]}", interval=0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        mid = api.ok("GET", f"/tasks/{task['id']}", token)
        in_flight = [s for s in mid["subtasks"] if s["status"] == "running"]
        if in_flight:
            break
    assert in_flight, "no kill interrupted running jobs"
    assert mid["status"] == "running"

    second = start_worker(data_dir, url, server.settings.site_id, log)
    try:
        done = api.wait_task(token, task["id"], timeout=240)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert done["status"] == "succeeded", done
    resources = api.ok("GET", "/resources", token)
    assert sorted(r["friendly_name"] for r in resources) == names
    assert {r["status"] for r in resources} == {"running"}
    nodes = [json.loads(p.read_text()) for p in (data_dir / "test-double").glob("*.json")]
    assert len(nodes) == COUNT
    assert {n["creations"] for n in nodes} == {1}
    assert sorted(n["name"] for n in nodes) == names
    print(f"\ninterrupted {len(in_flight)} running jobs; all {COUNT} resources running, each created once")
