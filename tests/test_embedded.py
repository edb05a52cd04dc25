"""README command 1 for real: ``slices-blueprint serve`` with no DATABASE_URL starts an
embedded PostgreSQL in its data dir, migrates it, serves the API and runs a worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psutil

from slices_blueprint.core.deps import BI_PREFIX
from tests.conftest import free_port
from tests.helpers import wait_answering, wait_for


def test_serve_on_embedded_defaults(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"SLICES_BLUEPRINT_DATA_DIR": str(tmp_path / "data"), "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]'}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "slices_blueprint", "serve", "--dev", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{base}/readyz", proc, tmp_path / "serve.log", 90)
        assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
        assert httpx.get(f"{base}/docs").status_code == 200
        admin = httpx.post(f"{base}/dev/tokens", json={"user": "admin"}).json()["token"]
        exp = httpx.post(f"{base}/dev/tokens", json={"experiment": "first"}).json()["token"]
        bi = f"{base}{BI_PREFIX}"
        auth = {"Authorization": f"Bearer {admin}"}
        flavor = httpx.post(f"{bi}/flavors", headers=auth, json={"friendly_name": "s", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 256}).json()
        image = httpx.post(f"{bi}/disk-images", headers=auth, json={"friendly_name": "i", "flavor_type": "test-double", "location": "x"}).json()
        auth = {"Authorization": f"Bearer {exp}"}
        task = httpx.post(f"{bi}/resources", headers=auth, json={"request_id": "6f1c7a4e-5f39-4b4e-9a57-0a1b2c3d4e5f", "resources": [
            {"friendly_name": "one", "flavor_id": flavor["id"], "disk_image_id": image["id"]}]}).json()
        wait_for(lambda: httpx.get(f"{bi}/tasks/{task['id']}", headers=auth).json()["status"] == "succeeded",
                 60, "the create task succeeding")
        postmasters = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "postgres" and str(tmp_path) in " ".join(p.info["cmdline"] or [])]
        assert postmasters, "the embedded PostgreSQL should run from the data dir"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    def ours() -> list:
        return [p for p in psutil.process_iter(["name", "cmdline"])
                if p.info["name"] == "postgres" and str(tmp_path) in " ".join(p.info["cmdline"] or [])]

    wait_for(lambda: not ours(), 5, "the embedded PostgreSQL stopping with the service")
