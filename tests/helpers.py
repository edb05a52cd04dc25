"""Test helpers: waiting for a condition, tokens from the dev issuer, catalog entries, waiting
for tasks."""

from __future__ import annotations

import ssl
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import tenacity

from slices_blueprint.core.dev_issuer import mint_dev_token

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str | Callable[[], str], *,
             interval: float = 0.2, ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``check`` every ``interval`` seconds until it answers something truthy, and answer
    that. After ``timeout`` seconds the test fails naming ``what`` (a callable is asked then:
    e.g. a log's tail) and the last answer. An exception from ``check`` fails at once, unless
    it is one of ``ignoring`` (e.g. "not answering yet")."""

    def timed_out(state: tenacity.RetryCallState) -> T:
        outcome = state.outcome
        last = outcome.exception() if outcome and outcome.failed else outcome and outcome.result()
        message = what() if callable(what) else what
        raise AssertionError(f"{message}: not within {timeout} s (last: {str(last)[:500]})")

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout), wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_not_result(bool) | tenacity.retry_if_exception_type(ignoring),
        retry_error_callback=timed_out,
    )
    return retrying(check)


def wait_answering(url: str, process: subprocess.Popen, log: Path, timeout: float,
                   verify: Callable[[], ssl.SSLContext] | None = None) -> None:
    """Wait until ``url`` answers 200 while ``process`` lives; fail with its log otherwise.
    ``verify``: the TLS context to trust (asked anew each try: e.g. a certificate the
    process makes when it starts)."""

    def answering() -> bool:
        assert process.poll() is None, (
            f"exited with {process.returncode}: {log.read_text()[-3000:]}")
        return httpx.get(url, timeout=2, verify=verify() if verify else True).status_code == 200

    wait_for(answering, timeout, lambda: f"{url} answering 200: {log.read_text()[-3000:]}",
             ignoring=(httpx.HTTPError, OSError))


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """A failed CLI run's stderr, which must be exactly one line without a traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def some_certificate(directory: Path) -> str:
    """A certificate as an agent makes its own (for hosts registered by hand)."""
    from slices_blueprint.agent.config import AgentSettings
    from slices_blueprint.agent.tls import ensure_certificate

    return ensure_certificate(AgentSettings(data_dir=directory, name="by-hand")).pem


class Api:
    """A thin client for one live server, with dev-issuer tokens."""

    def __init__(self, live: Any, http: httpx.Client) -> None:
        self.live, self.http = live, http

    def token(self, user: str = "alice", project: str = "demo", experiment: str | None = None, **kw: Any) -> str:
        return mint_dev_token(self.live.settings, user=user, project=project, experiment=experiment, **kw)

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, f"{self.live.bi}{path}", headers=headers, **kwargs)

    def ok(self, method: str, path: str, token: str | None, status: int = 200, **kwargs: Any) -> Any:
        response = self.call(method, path, token, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def test_double_catalog(self, suffix: str | None = None) -> tuple[str, str]:
        """A test-double flavor and image created by the dev admin; returns their ids."""
        admin = self.token("admin")
        suffix = suffix or uuid.uuid4().hex[:6]
        flavor = self.ok("POST", "/flavors", admin, 201, json={
            "friendly_name": f"td.small-{suffix}", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 512, "disk_mb": 1024})
        image = self.ok("POST", "/disk-images", admin, 201, json={
            "friendly_name": f"debian-{suffix}", "flavor_type": "test-double", "location": f"td-debian-12-{suffix}",
            "default_username": "debian", "min_ram_mib": 256})
        return flavor["id"], image["id"]

    def create(self, exp_token: str, names: list[str], flavor: str, image: str, config: dict | None = None,
               request_id: str | None = None, **extra: Any) -> dict:
        body = {"request_id": request_id or str(uuid.uuid4()), "resources": [
            {"friendly_name": n, "flavor_id": flavor, "disk_image_id": image, "request_config": config or {}} for n in names
        ], **extra}
        return self.ok("POST", "/resources", exp_token, 202, json=body)

    def wait_task(self, token: str, task_id: str, timeout: float = 60) -> dict:
        def finished() -> dict | None:
            task = self.ok("GET", f"/tasks/{task_id}", token)
            return task if task["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(finished, timeout,
                        lambda: f"task finishing: still {self.ok('GET', f'/tasks/{task_id}', token)}")
