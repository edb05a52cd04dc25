"""The image cache (file:// downloads with sha256 checks) and per-VM disks, on real files
with real e2fsprogs; the seed disk's NoCloud layout read back with debugfs."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from slices_blueprint.agent.config import FileRef
from slices_blueprint.agent.images import ImageCache, ImageError, writable_disk
from slices_blueprint.agent.seed import write_seed
from slices_blueprint.agent.state import VMSpec

pytestmark = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")


async def run(*argv: str) -> str:
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=True)
    return done.stdout


async def test_fetch_verifies_sha256_and_caches(tmp_path: Path) -> None:
    source = tmp_path / "kernel"
    source.write_bytes(b"kernel bytes")
    good = hashlib.sha256(b"kernel bytes").hexdigest()
    cache = ImageCache(tmp_path / "cache", {})
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
