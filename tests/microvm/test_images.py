"""The image cache (file: URLs inside the image directory, sha256 checks) and per-VM disks, on real files
with real e2fsprogs; the seed disk's NoCloud layout read back with debugfs; the vmlinux
taken out of the default image's bzImage, checked as an ELF and booted under QEMU."""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import http.server
import lzma
import re
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import lz4.block
import pytest

from slices_blueprint.agent.console import ConsoleLog, record
from slices_blueprint.agent.default_image import (
    READY_MARKER,
    DefaultImage,
    KernelImageError,
    build_default_image,
    extract_vmlinux,
)
from slices_blueprint.agent.images import ImageCache, ImageError, writable_disk
from slices_blueprint.agent.network import USER_MODE_GUEST
from slices_blueprint.agent.protocol import FileRef, GuestFile, GuestService, VMSpec
from slices_blueprint.agent.seed import write_seed
from slices_blueprint.agent.vmm.base import (
    LaunchPlan,
    UserNet,
    kill_process,
    remove_control_sockets,
)
from slices_blueprint.agent.vmm.qemu import QemuMicroVM
from slices_blueprint.agent.waiting import wait_until
from tests.conftest import free_port
from tests.microvm.conftest import require_microvm_host

pytestmark = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")

BOOT_TIMEOUT = 90
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point QEMU boots an ELF kernel through


async def run(*argv: str) -> str:
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=True)
    return done.stdout


async def test_fetch_verifies_sha256_and_caches(tmp_path: Path) -> None:
    source = tmp_path / "kernel"
    source.write_bytes(b"kernel bytes")
    good = hashlib.sha256(b"kernel bytes").hexdigest()
    cache = ImageCache(tmp_path / "cache", {}, image_dir=tmp_path)
    with pytest.raises(ImageError, match="does not match"):
        await cache.fetch(FileRef(url=source.as_uri(), sha256="0" * 64))
    assert list((tmp_path / "cache").iterdir()) == []
    cached = await cache.fetch(FileRef(url=source.as_uri(), sha256=good))
    source.write_bytes(b"changed")  # the cache answers without reading the source again
    assert (await cache.fetch(FileRef(url=source.as_uri(), sha256=good))).read_bytes() == (
        b"kernel bytes")
    assert cached.parent == tmp_path / "cache"
    with pytest.raises(ImageError, match="unknown image"):
        await cache.resolve("nope")


async def test_http_download_is_verified_and_cached(tmp_path: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    (served / "rootfs.ext4").write_bytes(b"r" * 300_000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/rootfs.ext4"
    try:
        cache = ImageCache(tmp_path / "cache", {})
        path = await cache.fetch(FileRef(url=url, sha256=hashlib.sha256(b"r" * 300_000).hexdigest()))
        assert path.read_bytes() == b"r" * 300_000
        with pytest.raises(ImageError, match="404"):
            await cache.fetch(FileRef(url=url + ".missing"))
    finally:
        server.shutdown()


async def test_writable_disk_is_a_grown_copy_and_base_is_untouched(tmp_path: Path) -> None:
    base = tmp_path / "base.ext4"
    await run("mkfs.ext4", "-q", "-F", "-L", "slices-root", str(base), "8M")
    before = hashlib.sha256(base.read_bytes()).hexdigest()
    disk = tmp_path / "vm.img"
    await writable_disk(base, disk, 32)
    assert disk.stat().st_size == 32 * 2**20
    blocks = await run("dumpe2fs", "-h", str(disk))
    fields = dict(line.split(":", 1) for line in blocks.splitlines() if ":" in line)
    assert int(fields["Block count"]) * int(fields["Block size"]) == 32 * 2**20  # resized
    assert hashlib.sha256(base.read_bytes()).hexdigest() == before


async def test_seed_disk_is_a_nocloud_datasource(tmp_path: Path) -> None:
    seed = tmp_path / "seed.img"
    spec = VMSpec(id="vm-seed", name="My VM!", ssh_authorized_keys=["ssh-ed25519 AAAA k"])
    await write_seed(seed, spec, "172.30.0.5/24", "172.30.0.1", "9.9.9.9", "52:54:00:00:00:05")
    assert (await run("e2label", str(seed))).strip() == "cidata"
    files = {p: await run("debugfs", "-R", f"cat {p}", str(seed)) for p in (
        "/meta-data", "/network-config", "/user-data", "/slices/env", "/slices/authorized_keys")}
    assert '"instance-id": "vm-seed"' in files["/meta-data"]
    assert '"local-hostname": "my-vm"' in files["/meta-data"]
    assert '"addresses": ["172.30.0.5/24"]' in files["/network-config"]
    assert files["/user-data"].startswith("#cloud-config")
    assert "IPV4=172.30.0.5/24" in files["/slices/env"]
    assert files["/slices/authorized_keys"] == "ssh-ed25519 AAAA k\n"


async def test_seed_carries_files_hosts_and_the_users_own_script(tmp_path: Path) -> None:
    seed = tmp_path / "seed.img"
    spec = VMSpec(id="vm-files", userdata="#!/bin/sh\necho hi\n",
                  files=[GuestFile(path="/etc/qkd/app/sae.key", content="KEY\n", mode=0o600)],
                  services=[GuestService(hostname="kme-a.qkd.internal", port=443, target_host="192.0.2.7",
                                         target_port=47100)])
    await write_seed(seed, spec, "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "52:54:00:00:00:06")
    cat = {p: await run("debugfs", "-R", f"cat {p}", str(seed)) for p in (
        "/slices/files/etc/qkd/app/sae.key", "/slices/hosts", "/slices/user-data", "/user-data")}
    assert cat["/slices/files/etc/qkd/app/sae.key"] == "KEY\n"
    assert "Mode:  0600" in await run("debugfs", "-R", "stat /slices/files/etc/qkd/app/sae.key", str(seed))
    assert cat["/slices/hosts"] == "10.0.2.100 kme-a.qkd.internal\n"
    assert cat["/slices/user-data"] == "#!/bin/sh\necho hi\n"  # the default image runs it as is
    assert "echo hi" in cat["/user-data"] and "Content-Type: text/cloud-config" in cat["/user-data"]
    assert "path: /etc/qkd/app/sae.key" in cat["/user-data"] and "append: true" in cat["/user-data"]
    with pytest.raises(ValueError, match="no '.' or '..' parts"):
        GuestFile(path="/etc/../../host", content="x")


def fake_bzimage(payload: bytes) -> bytes:
    """A bzImage as far as :func:`extract_vmlinux` reads it: a setup header (one setup
    sector, boot protocol 2.15) pointing at ``payload`` right after the setup code."""
    image = bytearray(1024)
    image[0x1F1] = 1
    image[0x202:0x208] = b"HdrS" + struct.pack("<H", 0x20F)
    image[0x248:0x250] = struct.pack("<II", 0, len(payload))
    return bytes(image) + payload


def lz4_legacy(data: bytes) -> bytes:
    blocks = b"".join(
        struct.pack("<I", len(block)) + block
        for block in (lz4.block.compress(data[i:i + (8 << 20)], store_size=False)
                      for i in range(0, len(data), 8 << 20)))
    return b"\x02\x21\x4c\x18" + blocks


# an x86-64 ELF executable's header, then more than one 8 MiB LZ4 block of contents
ELF = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 2, 0x3E) + b"kernel" * 1_500_000
SIZE = struct.pack("<I", len(ELF))  # what the kernel build appends (gzip's own trailer has it)


@pytest.mark.parametrize("payload", [
    gzip.compress(ELF), lzma.compress(ELF, format=lzma.FORMAT_XZ) + SIZE, lz4_legacy(ELF) + SIZE,
], ids=["gzip", "xz", "lz4"])
def test_extract_vmlinux_decompresses_each_kernel_format(payload: bytes) -> None:
    assert extract_vmlinux(fake_bzimage(payload)) == ELF


def test_extract_vmlinux_refuses_what_is_not_an_x86_64_kernel() -> None:
    with pytest.raises(KernelImageError, match="not a bzImage"):
        extract_vmlinux(ELF)
    with pytest.raises(KernelImageError, match="unsupported kernel compression"):
        extract_vmlinux(fake_bzimage(b"\x28\xb5\x2f\xfd" + bytes(16)))  # zstd
    with pytest.raises(KernelImageError, match="the build recorded"):
        extract_vmlinux(fake_bzimage(lz4_legacy(ELF) + struct.pack("<I", 5)))
    arm64 = ELF[:18] + struct.pack("<H", 0xB7) + ELF[20:]
    with pytest.raises(KernelImageError, match="not an x86-64 ELF"):
        extract_vmlinux(fake_bzimage(gzip.compress(arm64)))


def elf_parts(vmlinux: bytes) -> tuple[int, int, set[int]]:
    """Entry point, number of PT_LOAD segments, and the Xen ELF note types."""
    entry, phoff = struct.unpack_from("<QQ", vmlinux, 24)
    phentsize, phnum = struct.unpack_from("<HH", vmlinux, 54)
    loads, xen_notes = 0, set()
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", vmlinux, phoff + i * phentsize)
        loads += p_type == 1
        pos, end = p_offset, p_offset + p_filesz
        while p_type == 4 and pos < end:  # PT_NOTE: namesz, descsz, type, name, desc
            namesz, descsz, note_type = struct.unpack_from("<III", vmlinux, pos)
            if vmlinux[pos + 12:pos + 12 + namesz] == b"Xen\0":
                xen_notes.add(note_type)
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return entry, loads, xen_notes


@pytest.fixture(scope="module")
def default_image(tmp_path_factory: pytest.TempPathFactory) -> DefaultImage:
    require_microvm_host()
    return build_default_image(tmp_path_factory.mktemp("cache") / "default")


@pytest.mark.microvm
def test_default_image_vmlinux_is_its_bzimage_uncompressed(default_image: DefaultImage) -> None:
    bzimage, vmlinux = default_image.kernel.read_bytes(), default_image.vmlinux.read_bytes()
    entry, loads, xen_notes = elf_parts(vmlinux)
    assert entry and loads >= 2
    assert XEN_ELFNOTE_PHYS32_ENTRY in xen_notes, "no PVH entry point: QEMU could not boot it"
    version_at = struct.unpack_from("<H", bzimage, 0x20E)[0] + 0x200
    # "<release> (<builder>) <uts version>"; the banner has the compiler between the two
    release, uts_version = bzimage[version_at:bzimage.index(b"\0", version_at)].split(b") ", 1)
    banner = rb"Linux version %s\) \(.+?\) %s\n" % (re.escape(release), re.escape(uts_version))
    assert re.search(banner, vmlinux), f"no banner of {release!r} {uts_version!r}"


@pytest.mark.microvm
async def test_default_image_vmlinux_boots_under_qemu_microvm(
    default_image: DefaultImage, tmp_path: Path
) -> None:
    """The vmlinux Firecracker gets is a kernel that boots: QEMU -M microvm (TCG) enters
    it through its PVH note and the default image's initrd and rootfs reach the marker."""
    vm_dir = tmp_path / "vm-pvh"
    vm_dir.mkdir()
    await writable_disk(default_image.rootfs, vm_dir / "rootfs.img", 64)
    await write_seed(vm_dir / "seed.img", VMSpec(id="vm-pvh"), *USER_MODE_GUEST,
                     "52:54:00:00:00:0f")
    plan = LaunchPlan(vm_id="vm-pvh", vm_dir=vm_dir, kernel=default_image.vmlinux,
                      initrd=default_image.initrd, cmdline=default_image.cmdline,
                      rootfs=vm_dir / "rootfs.img", seed=vm_dir / "seed.img", vcpus=1,
                      memory_mib=192, net=UserNet(mac="52:54:00:00:00:0f", bind="127.0.0.1",
                                                  host_port=free_port()))
    started = time.monotonic()
    launched = await QemuMicroVM("qemu-system-x86_64", "tcg", None).launch(plan)
    pid = launched.pid
    try:
        console = ConsoleLog(vm_dir, 1024 * 1024)
        recorder = asyncio.create_task(record("vm-pvh", launched.console, console))
        await wait_until(console.ready, BOOT_TIMEOUT, "guest ready marker", interval=0.1)
        assert READY_MARKER in console.tail(20)
        print(f"vmlinux (PVH) to the guest-ready marker: {time.monotonic() - started:.1f} s")
    finally:
        await kill_process(pid, vm_dir)
        remove_control_sockets(vm_dir)
    await asyncio.wait_for(recorder, 5)  # QEMU's end closes the console: the recorder ends
