"""A guest that escaped into its VMM holds QEMU's rights: show they are an unprivileged
user under seccomp, unable to read the VM's files (user-data, keys, disks)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.microvm.conftest import make_host  # noqa: F401  (fixture)
from tests.microvm.guest_tools import SSHKey
from tests.security.test_guest_network import boot

pytestmark = pytest.mark.microvm


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines)}


def test_guest_vmm_runs_unprivileged_sandboxed_and_vm_files_are_root_only(
        make_host, tmp_path: Path) -> None:  # noqa: F811
    host = make_host()
    key = SSHKey(tmp_path)
    vm = boot(host, key, "vm-hard")
    assert key.run(host.address, vm["ssh"]["port"], "echo up").strip() == "up"  # TAP + disks work

    vms = host.data_dir / "vms"
    vm_dir = vms / "vm-hard"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in (vms, vm_dir, *(vm_dir / n for n in (
                 "vm.json", "seed.img", "rootfs.img", "console.log", "guest-ready")))}
    assert modes == {"vms": 0o700, "vm-hard": 0o700, "vm.json": 0o600, "seed.img": 0o600,
                     "rootfs.img": 0o600, "console.log": 0o600, "guest-ready": 0o600}, modes
    assert key.public.split()[1] in (vm_dir / "vm.json").read_text()  # what is at stake

    (pid,) = [p for p, v in host.vmm_pids().items() if v == "vm-hard"]
    qemu = status(pid)
    uids, gid = qemu["Uid"].split(), qemu["Gid"].split()[0]
    assert "0" not in uids, qemu["Uid"]
    assert qemu["Seccomp"] == "2" and qemu["NoNewPrivs"] == "1", qemu
    assert int(qemu["CapEff"], 16) == 0, qemu["CapEff"]

    # the attack: as QEMU's user, read the VM's record, seed and disk
    for name in ("vm.json", "seed.img", "rootfs.img", "console.log"):
        done = subprocess.run(
            ["setpriv", f"--reuid={uids[0]}", f"--regid={gid}", "--clear-groups",
             "cat", str(vm_dir / name)], capture_output=True, text=True, check=False)
        assert done.returncode != 0 and "Permission denied" in done.stderr, (name, done)
