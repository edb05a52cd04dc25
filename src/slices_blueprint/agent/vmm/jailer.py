"""Firecracker's jailer: one chroot per VM, Firecracker running as an unprivileged uid:gid.

The agent (root) runs ``jailer --id <id> --exec-file <firecracker> --uid --gid
--chroot-base-dir <vm dir>/jail --cgroup-version N [--netns P] -- <Firecracker args>``
(Firecracker's docs/jailer.md). The jailer copies Firecracker into the chroot
``<base>/<exec file name>/<id>/root``, pivots into it, creates ``/dev/kvm``,
``/dev/net/tun`` and ``/run`` there, drops to uid:gid and execs Firecracker, which keeps
its pid. ``--daemonize`` is not used: Firecracker's stdout must stay the guest console.

Around it the agent:

- keeps the chroot base inside the VM directory, so hard links never cross a filesystem
  and removing the VM directory removes the jail;
- hard-links (copies across filesystems) every file the API names into the chroot; the
  VM's own disks are chowned to uid:gid, the shared boot files stay root's and read-only
  (chowning a hard link would hand the cached kernel to every jailed VM to overwrite);
- hard-links ``firecracker.log`` inside the chroot at its host path, so ``--log-path``
  names the VM directory on Firecracker's command line, as without the jailer: that is
  how the agent recognises its VMM processes (``base.process_alive``);
- has the VM's TAP created for uid:gid (``FirecrackerVMM.tap_owner``), since Firecracker
  opens it unprivileged.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from slices_blueprint.agent.vmm.base import LaunchPlan

log = structlog.get_logger(__name__)

JAIL_DIR = "jail"
API_SOCKET = "/run/firecracker.socket"  # Firecracker's default, inside the chroot
JAILED_NAMES = {"kernel": "vmlinux", "initrd": "initrd.img", "rootfs": "rootfs.img",
                "seed": "seed.img"}  # LaunchPlan field -> file name in the chroot
VM_OWN = ("rootfs", "seed")  # chowned to uid:gid; the boot files are shared with other VMs


def _link(source: Path, dest: Path) -> str:
    """Hard-link ``source`` at ``dest``, or copy it when they are on different filesystems;
    answer which."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(source, dest)
        return "copy"
    return "link"


@dataclass(frozen=True)
class Jailer:
    """How this host runs the jailer: its binary, the jail's user, cgroup version, netns."""

    binary: str
    uid: int
    gid: int
    cgroup_version: int = 2
    netns: Path | None = None

    @staticmethod
    def base(vm_dir: Path) -> Path:
        """The VM's ``--chroot-base-dir``."""
        return vm_dir / JAIL_DIR

    def jail(self, plan: LaunchPlan, instance_id: str, firecracker: str,
             fc_log: Path) -> tuple[list[str], LaunchPlan, Path]:
        """Build the VM's chroot; answer the jailer's argv, the plan with the paths
        Firecracker sees, and the API socket's path on the host."""
        exec_file = Path(shutil.which(firecracker) or firecracker).resolve()
        self.remove(plan.vm_dir)  # the jail of an earlier boot: the jailer refuses to reuse it
        root = self.base(plan.vm_dir) / exec_file.name / instance_id / "root"
        inside: dict[str, Path] = {}
        how: dict[str, str] = {}
        for field, name in JAILED_NAMES.items():
            source = getattr(plan, field)
            if source is not None:
                inside[field] = Path("/", name)
                how[name] = self._put(source, root / name, own=field in VM_OWN)
        how[fc_log.name] = self._put(fc_log, root / fc_log.relative_to("/"), own=True)
        log.info("agent.jail_built", vm_id=plan.vm_id, jail_id=instance_id, chroot=str(root),
                 files=how)
        argv = [self.binary, "--id", instance_id, "--exec-file", str(exec_file),
                "--uid", str(self.uid), "--gid", str(self.gid),
                "--chroot-base-dir", str(self.base(plan.vm_dir)),
                "--cgroup-version", str(self.cgroup_version)]
        if self.netns:
            argv += ["--netns", str(self.netns)]
        argv += ["--", "--api-sock", API_SOCKET, "--log-path", str(fc_log)]
        return argv, replace(plan, **inside), root / API_SOCKET.lstrip("/")

    def _put(self, source: Path, target: Path, *, own: bool) -> str:
        how = _link(source, target)
        if own:
            os.chown(target, self.uid, self.gid)
        return how

    def remove(self, vm_dir: Path) -> None:
        """Remove the VM's chroot (its hard links only: the VM's own files stay)."""
        shutil.rmtree(self.base(vm_dir), ignore_errors=True)
