"""The per-VM seed disk: a cloud-init NoCloud data source (filesystem label ``cidata``).

It holds ``meta-data`` (instance id, hostname), ``user-data`` (the caller's, or a
``#cloud-config`` with the SSH keys; plus ``write_files`` for the spec's files and the
``/etc/hosts`` lines of its services), ``network-config`` (version 2, static address), so
cloud-init images configure themselves; and ``slices/env``, ``slices/authorized_keys``,
``slices/files/<path>`` (with their modes), ``slices/hosts`` and ``slices/user-data`` (the
caller's own, unmerged) for images without
cloud-init, such as the default busybox image whose init reads them. The base image is
never edited.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from pathlib import Path

from slices_blueprint.agent.cloudinit import with_cloud_config, write_files
from slices_blueprint.agent.default_image import SEED_LABEL
from slices_blueprint.agent.protocol import SERVICE_ADDRESSES, GuestFile, VMSpec
from slices_blueprint.agent.vmm.base import VMMError, run

SEED_MIB = 4


def hostname_for(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return cleaned[:63] or "microvm"


def guest_userdata(spec: VMSpec, hosts: str) -> str:
    """The seed's ``user-data``: the caller's (else a cloud-config with the SSH keys), with
    ``write_files`` for the spec's files and the services' ``/etc/hosts`` lines merged in."""
    files = write_files(spec.files)
    if hosts:
        files.append(write_files([GuestFile(path="/etc/hosts", content=hosts)])[0] | {"append": True})
    if spec.userdata:
        return with_cloud_config(spec.userdata, {"write_files": files} if files else {}) or ""
    config: dict[str, object] = {"ssh_authorized_keys": [k.strip() for k in spec.ssh_authorized_keys]}
    return "#cloud-config\n" + json.dumps(config | ({"write_files": files} if files else {}))


async def write_seed(dest: Path, spec: VMSpec, ipv4: str, gateway: str, dns: str,
                     mac: str) -> None:
    """Write the seed disk image to ``dest``, readable by its owner only."""
    hostname = hostname_for(spec.name)
    keys = "".join(k.strip() + "\n" for k in spec.ssh_authorized_keys)
    meta = {"instance-id": spec.id, "local-hostname": hostname}
    network = {
        "version": 2,
        "ethernets": {"eth0": {
            "match": {"macaddress": mac}, "set-name": "eth0", "addresses": [ipv4],
            "routes": [{"to": "0.0.0.0/0", "via": gateway}],
            "nameservers": {"addresses": [dns]},
        }},
    }
    hosts = "".join(f"{addr} {svc.hostname}\n" for addr, svc in zip(SERVICE_ADDRESSES, spec.services, strict=False))
    userdata = guest_userdata(spec, hosts)
    env = {"HOSTNAME": hostname, "IPV4": ipv4, "GATEWAY": gateway, "DNS": dns}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "slices").mkdir()
        (root / "meta-data").write_text(json.dumps(meta) + "\n")  # JSON is valid YAML
        (root / "network-config").write_text(json.dumps(network) + "\n")
        (root / "user-data").write_text(userdata)
        (root / "slices/env").write_text(
            "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
        )
        (root / "slices/authorized_keys").write_text(keys)
        (root / "slices/hosts").write_text(hosts)
        (root / "slices/user-data").write_text(spec.userdata or "")  # as given: a script runs as is
        files = (root / "slices/files").resolve()
        for f in spec.files:
            target = files / f.path.lstrip("/")
            if not target.resolve().is_relative_to(files):
                raise VMMError(f"file path outside the guest: {f.path!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content)
            target.chmod(f.mode)
        dest.touch(mode=0o600)  # mkfs keeps an existing file's mode: never readable by others
        dest.chmod(0o600)
        await run("mkfs.ext4", "-q", "-F", "-L", SEED_LABEL, "-d", str(root), str(dest),
                  f"{SEED_MIB}M")
