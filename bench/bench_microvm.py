"""Time from create request to guest ready through the agent, versus the same QEMU started by
hand with the same image, in the same run; and the agent's RSS with 0 and 5 VMs.

"Guest ready" is the same event both ways: the guest's init printing its ready marker on the
serial console (after networking and dropbear are up). The agent's figure includes what it
adds: allocation, the per-VM disk copy and resize, the seed disk, the daemonized launch and
its polling of the console. The hand run gets its disk and seed prepared before the clock
starts. Both use QEMU user-mode networking (so the bench needs no root and no namespace).

    /tmp/venv/bin/python bench/bench_microvm.py [-n 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from slices_blueprint.agent.default_image import READY_MARKER, build_default_image
from slices_blueprint.agent.images import writable_disk
from slices_blueprint.agent.network import USER_MODE_GUEST
from slices_blueprint.agent.seed import write_seed
from slices_blueprint.agent.state import VMSpec
from slices_blueprint.agent.vmm.base import LaunchPlan, UserNet, remove_control_sockets
from slices_blueprint.agent.vmm.qemu import QemuMicroVM
from slices_blueprint.hosts.pinning import pinned_context

MEMORY_MIB, DISK_MIB = 160, 64


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _prepare(vm_dir: Path, port: int) -> LaunchPlan:
    image = build_default_image(vm_dir.parent / "image")
    await writable_disk(image.rootfs, vm_dir / "rootfs.img", DISK_MIB)
    ipv4, gateway, dns = USER_MODE_GUEST
    await write_seed(
        vm_dir / "seed.img", VMSpec(id=vm_dir.name), ipv4, gateway, dns, "52:54:00:12:34:56"
    )
    return LaunchPlan(
        vm_id=vm_dir.name,
        vm_dir=vm_dir,
        kernel=image.kernel,
        initrd=image.initrd,
        cmdline=image.cmdline,
        rootfs=vm_dir / "rootfs.img",
        seed=vm_dir / "seed.img",
        vcpus=1,
        memory_mib=MEMORY_MIB,
        net=UserNet(mac="52:54:00:12:34:56", bind="127.0.0.1", host_port=port),
    )


def by_hand(work: Path, run: int) -> float:
    """QEMU in the foreground, console on stdout; seconds from exec to the ready marker."""
    vm_dir = work / f"hand{run}"
    vm_dir.mkdir()
    plan = asyncio.run(_prepare(vm_dir, 23900 + run))
    argv = QemuMicroVM("qemu-system-x86_64", "tcg", None).argv(plan)
    daemon_opts = {
        "-daemonize",
        "-pidfile",
        str(vm_dir / "vmm.pid"),
        "-serial",
        f"file:{plan.console_log}",
    }
    argv = [a for a in argv if a not in daemon_opts] + ["-serial", "stdio"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        if READY_MARKER.encode() in line:
            break
    elapsed = time.monotonic() - start
    proc.kill()
    proc.wait()
    remove_control_sockets(vm_dir)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="boots per side")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-microvm-"))
    token = secrets.token_urlsafe(24)
    port = 18700
    env = {
        **os.environ,
        "SLICES_AGENT_DATA_DIR": str(work / "agent"),
        "SLICES_AGENT_TOKEN": token,
        "SLICES_AGENT_LISTEN_PORT": str(port),
        "SLICES_AGENT_NETWORK_MODE": "user",
        "SLICES_AGENT_FORWARD_BIND": "127.0.0.1",
        "SLICES_AGENT_FORWARD_PORT_BASE": "23000",
    }
    agent = subprocess.Popen(
        [sys.executable, "-m", "slices_blueprint.agent"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cert = work / "agent" / "tls" / "cert.pem"  # the agent's own, made at its start
    deadline = time.monotonic() + 30
    while not cert.exists():
        assert time.monotonic() < deadline, "agent did not start"
        time.sleep(0.1)
    api = httpx.Client(
        base_url=f"https://127.0.0.1:{port}",
        timeout=300,
        headers={"Authorization": f"Bearer {token}"},
        verify=pinned_context(cert.read_text()),
    )
    try:
        while True:
            try:
                api.get("/healthz")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "agent did not start"
                time.sleep(0.1)
        build_default_image(work / "agent" / "cache" / "default")  # both sides start warm
        rss_idle = rss_mib(agent.pid)

        agent_times, hand_times = [], []
        for run in range(args.n):
            hand_times.append(by_hand(work, run))
            start = time.monotonic()
            vm = api.post(
                "/v1/vms",
                params={"wait_ready": 120},
                json={"id": f"bench{run}", "memory_mib": MEMORY_MIB, "disk_mib": DISK_MIB},
            ).json()
            agent_times.append(time.monotonic() - start)
            assert vm["guest_ready"], vm
            api.delete(f"/v1/vms/bench{run}")

        for i in range(5):
            api.post(
                "/v1/vms", json={"id": f"rss{i}", "memory_mib": MEMORY_MIB, "disk_mib": DISK_MIB}
            )
        for i in range(5):
            api.get(f"/v1/vms/rss{i}", params={"wait_ready": 300})
        rss_five = rss_mib(agent.pid)
        for i in range(5):
            api.delete(f"/v1/vms/rss{i}")

        agent_med, hand_med = statistics.median(agent_times), statistics.median(hand_times)
        print(f"boots per side: {args.n} (QEMU microvm, TCG, user-mode net, {MEMORY_MIB} MiB)")
        print(f"by hand  create->ready: median {hand_med:.2f} s  runs {_fmt(hand_times)}")
        print(f"agent    create->ready: median {agent_med:.2f} s  runs {_fmt(agent_times)}")
        print(f"ratio agent/hand: {agent_med / hand_med:.2f}")
        print(f"agent RSS: {rss_idle:.1f} MiB with 0 VMs, {rss_five:.1f} MiB with 5 VMs")
    finally:
        for vm in api.get("/v1/vms").json():
            api.delete(f"/v1/vms/{vm['id']}")
        api.close()
        agent.terminate()
        agent.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
