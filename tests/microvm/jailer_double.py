"""JailerContractDouble: a stand-in for Firecracker's ``jailer`` binary, NOT the jailer.

It enforces the argument contract of Firecracker's docs/jailer.md and builds the chroot the
way the jailer does, then execs the Firecracker it was given (in the tests, the
FirecrackerAPIContractDouble), which so keeps its pid:

- required ``--id`` (letters, digits, hyphens; at most 64), ``--exec-file`` (an existing
  file, relative paths against the working directory), ``--uid``, ``--gid`` (numbers);
  ``--chroot-base-dir`` an existing directory (default ``/srv/jailer``);
  ``--cgroup-version`` 1 or 2; ``--netns`` an existing file; arguments after ``--`` go to
  Firecracker, after ``--id <id>`` and the start-time arguments;
- the chroot is ``<base>/<exec file name>/<id>/root``; the exec file is copied to its
  ``/<exec file name>``; ``/``, ``/dev``, ``/dev/net`` and ``/run`` get mode 0700 and
  uid:gid; ``/dev/net/tun`` and ``/dev/kvm`` are made with mknod (so it needs root, like
  the jailer), which fails on a chroot a jailer already used, as the real mknod does.

What it does NOT do: pivot_root/chroot into the jail, new mount or PID namespaces, join
the netns, cgroups, resource limits, dropping privileges, ``--daemonize``, closing
inherited descriptors. Instead it passes the chroot and uid:gid to the Firecracker double
in ``JAILER_DOUBLE_ROOT``/``_UID``/``_GID`` (the only environment it keeps, as the jailer
clears the rest), which resolves paths inside the root and checks permissions as uid:gid.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import NoReturn

ID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
JAILED_FOLDERS = ("", "dev", "dev/net", "run")
DEVICES = {"dev/net/tun": (10, 200), "dev/kvm": (10, 232)}


def fail(message: str) -> NoReturn:
    print(f"Jailer error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="jailer")
    parser.add_argument("--id", required=True)
    parser.add_argument("--exec-file", required=True)
    parser.add_argument("--uid", required=True, type=int)
    parser.add_argument("--gid", required=True, type=int)
    parser.add_argument("--chroot-base-dir", default="/srv/jailer")
    parser.add_argument("--cgroup-version", default="1", choices=["1", "2"])
    parser.add_argument("--netns")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def main() -> None:
    started = time.monotonic_ns() // 1000
    args, extra = parse(sys.argv[1:])
    if not ID_PATTERN.fullmatch(args.id):
        fail(f"Invalid instance ID: {args.id!r}")
    exec_file = Path(args.exec_file).resolve()
    if not exec_file.is_file():
        fail(f"{args.exec_file} is not a file")
    base = Path(args.chroot_base_dir).resolve()
    if not base.is_dir():
        fail(f"{args.chroot_base_dir} is not a directory")
    if args.netns and not Path(args.netns).is_file():
        fail(f"Failed to open {args.netns}")
    root = base / exec_file.name / args.id / "root"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(exec_file, root / exec_file.name)
    for folder in JAILED_FOLDERS:
        (root / folder).mkdir(exist_ok=True)
        os.chmod(root / folder, 0o700)
        os.chown(root / folder, args.uid, args.gid)
    for device, (major, minor) in DEVICES.items():
        try:
            os.mknod(root / device, stat.S_IFCHR | 0o600, os.makedev(major, minor))
        except OSError as exc:
            fail(f"Failed to create /{device} via mknod inside the jail: {exc}")
        os.chown(root / device, args.uid, args.gid)
    env = {"JAILER_DOUBLE_ROOT": str(root), "JAILER_DOUBLE_UID": str(args.uid),
           "JAILER_DOUBLE_GID": str(args.gid)}
    os.execve(root / exec_file.name, [
        f"/{exec_file.name}", "--id", args.id, "--start-time-us", str(started),
        "--start-time-cpu-us", "0", "--parent-cpu-time-us", "0", *extra], env)


if __name__ == "__main__":
    main()
