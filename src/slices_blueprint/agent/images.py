"""Image files: a download cache with sha256 checks, and per-VM writable disks.

Downloads (``http(s)://`` or ``file://``) land in ``cache/<sha256 of url>`` only after the
checksum matched; progress is logged every 10 %. A VM's disk is a copy of the cached root
filesystem: a reflink (copy-on-write) where the filesystem supports it (XFS, btrfs), a
plain copy otherwise, grown (sparsely) to the requested size (ext4 is resized offline with resize2fs).
The base image is never modified; per-VM configuration goes on the seed disk (``seed.py``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import structlog

from slices_blueprint.agent.config import FileRef, ImageSource
from slices_blueprint.agent.default_image import build_default_image
from slices_blueprint.agent.state import BootFiles
from slices_blueprint.agent.vmm.base import VMMError, run

log = structlog.get_logger(__name__)

FICLONE = 0x40049409
EXT4_MAGIC_OFFSET, EXT4_MAGIC = 1080, b"\x53\xef"
DEFAULT_IMAGE = "default"

class ImageError(VMMError):
    """An image could not be fetched, verified or prepared."""


class ImageCache:
    """``vmlinux``: the VMM boots an uncompressed ELF kernel (Firecracker), so the default
    image resolves to its ``vmlinux``; named images must then give one themselves."""

    def __init__(self, root: Path, named: dict[str, ImageSource], *,
                 vmlinux: bool = False) -> None:
        self.root = root
        self.named = named
        self.vmlinux = vmlinux
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}

    def names(self) -> list[str]:
        return [DEFAULT_IMAGE, *self.named]

    async def resolve(self, image: str | ImageSource) -> tuple[BootFiles, Path]:
        """The boot files and base root filesystem for ``image`` (a name or a source)."""
        if image == DEFAULT_IMAGE:
            built = await asyncio.to_thread(build_default_image, self.root / "default")
            return BootFiles(kernel=built.vmlinux if self.vmlinux else built.kernel,
                             initrd=built.initrd, cmdline=built.cmdline), built.rootfs
        if isinstance(image, str):
            if image not in self.named:
                raise ImageError(f"unknown image {image!r} (known: {', '.join(self.names())})")
            image = self.named[image]
        kernel = await self.fetch(image.kernel)
        initrd = await self.fetch(image.initrd) if image.initrd else None
        rootfs = await self.fetch(image.rootfs)
        return BootFiles(kernel=kernel, initrd=initrd, cmdline=image.cmdline), rootfs

    async def fetch(self, ref: FileRef) -> Path:
        """The cached file for ``ref``, downloading and verifying it once."""
        key = hashlib.sha256(ref.url.encode()).hexdigest()
        target = self.root / key
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if target.exists():
                return target
            partial = target.with_suffix(".part")
            digest = await self._download(ref.url, partial)
            if ref.sha256 and digest != ref.sha256.lower():
                partial.unlink(missing_ok=True)
                raise ImageError(f"{ref.url}: sha256 {digest} does not match {ref.sha256}")
            os.replace(partial, target)
            log.info("agent.image_cached", url=ref.url, sha256=digest)
            return target

    async def _download(self, url: str, dest: Path) -> str:
        digest = hashlib.sha256()
        parsed = urlparse(url)
        if parsed.scheme == "file":
            source = Path(unquote(parsed.path))
            return await asyncio.to_thread(_copy_and_hash, source, dest)
        if parsed.scheme not in ("http", "https"):
            raise ImageError(f"{url}: only http(s):// and file:// URLs are supported")
        try:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60) as client, \
                    client.stream("GET", url) as response:
                response.raise_for_status()
                total = int(response.headers.get("content-length", 0))
                done, reported = 0, -10
                with dest.open("wb") as f:
                    async for chunk in response.aiter_bytes(1 << 20):
                        f.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        percent = done * 100 // total if total else 0
                        if percent >= reported + 10:
                            reported = percent
                            log.info("agent.image_download", url=url, percent=percent,
                                     bytes=done, total=total)
        except httpx.HTTPError as exc:
            dest.unlink(missing_ok=True)
            raise ImageError(f"{url}: download failed: {exc}") from exc
        return digest.hexdigest()


def _copy_and_hash(source: Path, dest: Path) -> str:
    shutil.copyfile(source, dest)
    with dest.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _reflink_or_copy(source: Path, dest: Path) -> str:
    with source.open("rb") as src, dest.open("wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return "reflink"
        except OSError:
            pass
    shutil.copyfile(source, dest)
    return "copy"


def _is_ext4(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(EXT4_MAGIC_OFFSET)
        return f.read(2) == EXT4_MAGIC


async def writable_disk(base: Path, dest: Path, size_mib: int) -> None:
    """Make ``dest`` the VM's own disk from ``base``, at least ``size_mib`` large."""
    how = await asyncio.to_thread(_reflink_or_copy, base, dest)
    size = size_mib * 1024 * 1024
    if dest.stat().st_size < size:
        os.truncate(dest, size)
        if _is_ext4(dest):
            await run("e2fsck", "-fp", str(dest))
            await run("resize2fs", str(dest))
    log.info("agent.disk_ready", disk=str(dest), how=how, size_mib=size_mib)
