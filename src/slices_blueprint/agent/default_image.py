"""Build the small default microVM image from Debian's packages only (no internet).

Parts, all taken from installed Debian packages (see ``.ci/apt-microvm.txt``):

- ``vmlinuz``: the cloud kernel (``linux-image-cloud-amd64``), a bzImage, which QEMU boots;
- ``vmlinux``: the same kernel uncompressed, an ELF executable, which Firecracker needs
  (and QEMU boots too, through its PVH entry point): :func:`extract_vmlinux`;
- ``initrd.img``: stage 1, busybox-static plus the virtio modules the cloud kernel builds as
  modules; it mounts the disk labelled ``slices-root`` and switches to it;
- ``rootfs.ext4``: stage 2, busybox-static (as ``init``), dropbear (with the shared libraries
  it links) and ``/etc/init.d/rcS``, which reads the per-VM seed disk (label ``cidata``,
  written by :mod:`slices_blueprint.agent.seed`) to set hostname, address, route, DNS and
  root's ``authorized_keys``, places the seed's files (``slices/files``, modes kept, root's)
  and ``/etc/hosts`` lines, runs a ``#!`` user-data script, starts dropbear on port 22,
  and prints :data:`READY_MARKER` on the serial console.

The base image is never edited per VM: the agent copies ``rootfs.ext4`` per VM and attaches
the seed as a second disk. Builds are cached under ``dest/<key>`` keyed by the inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lz4.block
import structlog

log = structlog.get_logger(__name__)

BUILD_VERSION = "5"
READY_MARKER = "slices-guest-ready"
ROOT_LABEL = "slices-root"
SEED_LABEL = "cidata"
ROOTFS_MIB = 48
GUEST_MODULES = ("virtio_mmio", "virtio_blk", "virtio_net")
BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path("/usr/sbin/dropbear")
ELF_EXEC, ELF_X86_64 = 2, 0x3E  # e_type ET_EXEC, e_machine EM_X86_64
LZ4_LEGACY_MAGIC, LZ4_LEGACY_BLOCK = b"\x02\x21\x4c\x18", 8 << 20

STAGE1_INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
root=""
for i in $(seq 1 100); do
  root=$(findfs LABEL={ROOT_LABEL} 2>/dev/null) && break
  sleep 0.05
done
[ -n "$root" ] || {{ echo "stage1: no disk labelled {ROOT_LABEL}"; exec sh; }}
mount -t ext4 "$root" /newroot || exec sh
for d in proc sys dev; do mkdir -p /newroot/$d; mount --move /$d /newroot/$d; done
exec switch_root /newroot /sbin/init
"""

RCS = f"""#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mkdir -p /dev/pts /run /tmp /var/log /etc/dropbear /run/seed
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mkdir -p /run/seed
mount -t tmpfs tmpfs /tmp
seed=""
for i in $(seq 1 100); do
  seed=$(findfs LABEL={SEED_LABEL} 2>/dev/null) && break
  sleep 0.05
done
if [ -n "$seed" ] && mount -o ro "$seed" /run/seed; then
  . /run/seed/slices/env
fi
hostname "${{HOSTNAME:-microvm}}"
ip link set lo up
ip link set eth0 up
[ -n "$IPV4" ] && ip addr add "$IPV4" dev eth0
[ -n "$GATEWAY" ] && ip route add default via "$GATEWAY"
[ -n "$DNS" ] && echo "nameserver $DNS" > /etc/resolv.conf
mkdir -p /root/.ssh
[ -f /run/seed/slices/authorized_keys ] && cp /run/seed/slices/authorized_keys /root/.ssh/
chown -R 0:0 /root /etc/dropbear
chmod 700 /root /root/.ssh
chmod 600 /root/.ssh/authorized_keys 2>/dev/null
if [ -d /run/seed/slices/files ]; then
  (cd /run/seed/slices/files && find . -type f) | while read -r f; do
    mkdir -p "/${{f%/*}}" && cp -p "/run/seed/slices/files/$f" "/$f" && chown 0:0 "/$f"
  done
fi
[ -s /run/seed/slices/hosts ] && cat /run/seed/slices/hosts >> /etc/hosts
if head -c 2 /run/seed/slices/user-data 2>/dev/null | grep -q '#!'; then
  cp /run/seed/slices/user-data /run/user-data && chmod +x /run/user-data
  /run/user-data > /var/log/user-data.log 2>&1 &
fi
dropbear -R -s -p 22
echo "{READY_MARKER}" > /dev/console
"""

INITTAB = """::sysinit:/etc/init.d/rcS
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
"""


class KernelImageError(RuntimeError):
    """A kernel image is not a bzImage this module can unpack to an x86-64 vmlinux."""


def _lz4_legacy(data: bytes) -> bytes:
    """Decompress LZ4's legacy frame (``lz4 -l``, the kernel's LZ4 format): after the magic,
    blocks each preceded by their compressed size, each at most 8 MiB uncompressed; four
    bytes left over are the size the kernel build appends, not a block."""
    blocks, pos = [], len(LZ4_LEGACY_MAGIC)
    while pos + 4 < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        blocks.append(lz4.block.decompress(data[pos + 4:pos + 4 + size],
                                           uncompressed_size=LZ4_LEGACY_BLOCK))
        pos += 4 + size
    return b"".join(blocks)


DECOMPRESSORS: dict[bytes, Callable[[bytes], bytes]] = {  # payload magic -> decompressor
    b"\x1f\x8b": lambda data: zlib.decompressobj(wbits=31).decompress(data),
    b"\xfd7zXZ\x00": lambda data: lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data),
    LZ4_LEGACY_MAGIC: _lz4_legacy,
}


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed kernel (an x86-64 ELF executable) inside an x86 bzImage.

    The setup header (boot protocol 2.08+) locates the compressed payload; its magic bytes
    pick the decompressor; the kernel build appends the uncompressed size as the payload's
    last four bytes, which checks the result.
    """
    if bzimage[0x202:0x206] != b"HdrS" or struct.unpack_from("<H", bzimage, 0x206)[0] < 0x208:
        raise KernelImageError("not a bzImage with boot protocol 2.08 or later")
    setup_sectors = bzimage[0x1F1] or 4  # 0 means 4 (boot protocol)
    payload_at = (setup_sectors + 1) * 512 + struct.unpack_from("<I", bzimage, 0x248)[0]
    payload = bzimage[payload_at:payload_at + struct.unpack_from("<I", bzimage, 0x24C)[0]]
    (size,) = struct.unpack("<I", payload[-4:])
    decompress = next((f for magic, f in DECOMPRESSORS.items() if payload.startswith(magic)),
                      None)
    if decompress is None:
        raise KernelImageError(f"unsupported kernel compression (magic {payload[:4].hex()})")
    try:
        vmlinux = decompress(payload)
    except (zlib.error, lzma.LZMAError, lz4.block.LZ4BlockError) as exc:
        raise KernelImageError(f"corrupt kernel payload: {exc}") from exc
    if len(vmlinux) & 0xFFFFFFFF != size:
        raise KernelImageError(f"decompressed {len(vmlinux)} bytes, the build recorded {size}")
    if vmlinux[:6] != b"\x7fELF\x02\x01" or struct.unpack_from("<HH", vmlinux, 16) != (
            ELF_EXEC, ELF_X86_64):
        raise KernelImageError("the payload is not an x86-64 ELF executable")
    return vmlinux


@dataclass(frozen=True)
class DefaultImage:
    kernel: Path
    vmlinux: Path
    initrd: Path
    rootfs: Path
    cmdline: str = "console=ttyS0 panic=-1 quiet"


def cloud_kernel() -> tuple[Path, str]:
    """The newest installed Debian cloud kernel and its release string."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"))
    if not kernels:
        raise FileNotFoundError(
            "no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64"
        )
    kernel = kernels[-1]
    return kernel, kernel.name.removeprefix("vmlinuz-")


def _module_order(release: str) -> list[Path]:
    """The ``.ko`` files to insmod, dependencies first, each once."""
    order: list[Path] = []
    for module in GUEST_MODULES:
        out = subprocess.run(
            ["modprobe", "-S", release, "--show-depends", module],
            check=True, capture_output=True, text=True,
        ).stdout
        for path in re.findall(r"^insmod (\S+)", out, flags=re.MULTILINE):
            if Path(path) not in order:
                order.append(Path(path))
    return order


def _cpio_newc(root: Path) -> bytes:
    """A ``newc`` cpio archive of ``root`` (the initramfs format), as bytes."""
    chunks: list[bytes] = []

    def entry(name: str, mode: int, data: bytes, ino: int) -> None:
        raw = name.encode() + b"\0"
        header = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        )
        blob = header.encode() + raw
        chunks.append(blob + b"\0" * (-len(blob) % 4))
        chunks.append(data + b"\0" * (-len(data) % 4))

    for ino, path in enumerate(sorted(root.rglob("*")), start=1):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            entry(rel, st.st_mode, os.readlink(path).encode(), ino)
        elif path.is_dir():
            entry(rel, st.st_mode, b"", ino)
        else:
            entry(rel, st.st_mode, path.read_bytes(), ino)
    entry("TRAILER!!!", 0, b"", 0)
    return b"".join(chunks)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _build_initrd(release: str, out: Path, work: Path) -> None:
    root = work / "initrd"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    modules = root / "lib/modules"
    modules.mkdir(parents=True)
    order = _module_order(release)
    for ko in order:
        shutil.copy2(ko, modules / ko.name)
    _write(modules / "order", "\n".join(ko.stem for ko in order) + "\n")
    _write(root / "init", STAGE1_INIT, 0o755)
    out.write_bytes(gzip.compress(_cpio_newc(root), compresslevel=6))


def _shared_libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    return [Path(p) for p in re.findall(r"(/\S+\.so[.\d]*)", out)]


def _build_rootfs(out: Path, work: Path) -> None:
    root = work / "rootfs"
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "root", "lib64", "dev", "proc",
              "sys", "run", "tmp", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = root / applet
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    shutil.copy2(DROPBEAR, root / "usr/sbin/dropbear")
    for lib in _shared_libraries(DROPBEAR):
        target = root / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(root / "etc/group", "root:x:0:\n")
    _write(root / "etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600)
    _write(root / "etc/shells", "/bin/sh\n")
    _write(root / "etc/inittab", INITTAB)
    _write(root / "etc/init.d/rcS", RCS, 0o755)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-E", "root_owner=0:0", "-d", str(root),
         str(out), f"{ROOTFS_MIB}M"],
        check=True, capture_output=True,
    )


def _cache_key(kernel: Path) -> str:
    parts = [BUILD_VERSION, STAGE1_INIT, RCS, INITTAB]
    for path in (kernel, BUSYBOX, DROPBEAR):
        st = path.stat()
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_default_image(dest: Path) -> DefaultImage:
    """Build (or reuse the cached) default image under ``dest``; answer its files."""
    kernel, release = cloud_kernel()
    for tool in (BUSYBOX, DROPBEAR):
        if not tool.exists():
            raise FileNotFoundError(f"{tool} missing: apt-get install busybox-static dropbear-bin")
    final = dest / _cache_key(kernel)
    image = DefaultImage(final / "vmlinuz", final / "vmlinux", final / "initrd.img",
                         final / "rootfs.ext4")
    if (final / "manifest.json").exists():
        return image
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".build-") as tmp:
        work = Path(tmp)
        staged = work / "out"
        staged.mkdir()
        shutil.copy2(kernel, staged / "vmlinuz")
        started = time.perf_counter()
        (staged / "vmlinux").write_bytes(extract_vmlinux(kernel.read_bytes()))
        log.info("agent.vmlinux_extracted", kernel=release,
                 seconds=round(time.perf_counter() - started, 3),
                 bytes=(staged / "vmlinux").stat().st_size)
        _build_initrd(release, staged / "initrd.img", work)
        _build_rootfs(staged / "rootfs.ext4", work)
        manifest = {"kernel_release": release, "build_version": BUILD_VERSION}
        (staged / "manifest.json").write_text(json.dumps(manifest))
        try:
            staged.rename(final)
        except OSError:  # a concurrent build won the race
            if not (final / "manifest.json").exists():
                raise
    log.info("agent.default_image_built", path=str(final), kernel=release)
    return image
