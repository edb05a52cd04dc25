"""A real guest floods its serial console: the files on disk stay under the cap, readers see
the latest lines, and it keeps holding across an agent restart (QEMU outlives the agent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from tests.microvm.conftest import TestHost, make_host  # noqa: F401  (fixture)
from tests.microvm.guest_tools import SSHKey
from tests.security.test_guest_network import boot

pytestmark = pytest.mark.microvm

CAP = 256 * 1024
FLOOD_BYTES = 600_000  # base64'd: ~800 kB, 3 times the cap
FILES = ("console.log", "console.log.1")


def on_disk(vm_dir: Path) -> int:
    return sum((vm_dir / n).stat().st_size for n in FILES if (vm_dir / n).exists())


def wait_for_line(host: TestHost, vm_id: str, line: str, vm_dir: Path,
                  samples: list[tuple[float, int]]) -> None:
    """Sample the bytes on disk until the console tail shows ``line`` (at most 90 s)."""
    start = time.monotonic()

    def tail_has_line() -> bool:
        samples.append((round(time.monotonic() - start, 1), on_disk(vm_dir)))
        return line in tail_lines(host, vm_id)

    found = Retrying(stop=stop_after_delay(90), wait=wait_fixed(0.25),
                     retry=retry_if_result(lambda ok: not ok),
                     retry_error_callback=lambda _: False)(tail_has_line)
    assert found, f"{line} never reached the console tail"


def tail_lines(host: TestHost, vm_id: str) -> str:
    with host.client() as api:
        return api.get(f"/v1/vms/{vm_id}/console", params={"tail": 5}).text


def flood(key: SSHKey, host: TestHost, port: int, done_line: str) -> None:
    key.run(host.address, port, (
        f"setsid sh -c 'head -c {FLOOD_BYTES} /dev/urandom | base64 > /dev/ttyS0; "
        f"echo {done_line} > /dev/ttyS0' < /dev/null > /dev/null 2>&1 &"))


def test_console_flood_stays_under_the_cap_across_agent_restart(
        make_host, tmp_path: Path) -> None:  # noqa: F811
    host = make_host(console_log_max_bytes=str(CAP))
    key = SSHKey(tmp_path)
    vm = boot(host, key, "vm-flood")
    port, vm_dir = vm["ssh"]["port"], host.data_dir / "vms" / "vm-flood"
    samples: list[tuple[float, int]] = []

    flood(key, host, port, "flood-one-done")
    wait_for_line(host, "vm-flood", "flood-one-done", vm_dir, samples)
    print("bytes on disk over time (s, bytes):", samples[::8])
    assert max(b for _, b in samples) <= CAP, samples
    assert samples[-1][0] > 5, "the flood was too short to mean anything"

    with host.client() as api:  # the ready marker was noted as it streamed by
        assert api.get("/v1/vms/vm-flood").json()["guest_ready"]

    host.kill_agent()  # QEMU keeps running; nobody reads its console now
    flood(key, host, port, "flood-while-down-done")
    time.sleep(8)
    assert on_disk(vm_dir) <= CAP
    host.start_agent(console_log_max_bytes=str(CAP))
    key.run(host.address, port, "echo after-restart-line > /dev/ttyS0")
    samples.clear()
    flood(key, host, port, "flood-two-done")
    wait_for_line(host, "vm-flood", "flood-two-done", vm_dir, samples)
    assert max(b for _, b in samples) <= CAP, samples
