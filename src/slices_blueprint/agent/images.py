"""Image files: a download cache with sha256 checks, and per-VM writable disks.

Downloads (``http(s)://``, or ``file:`` URLs of files inside the configured ``image_dir``:
never elsewhere, so the agent's token cannot copy host files such as /etc/shadow) land in
``cache/<sha256 of url>`` only after the checksum matched; progress is logged every 10 %.
The cache is readable by the agent's user only (folder 0700, files 0600). A VM's disk is a
copy of the cached root filesystem: a reflink (copy-on-write) where the filesystem supports
it (XFS, btrfs), a plain copy otherwise, grown (sparsely) to the requested size (ext4 is
resized offline with resize2fs).
The base image is never modified; per-VM configuration goes on the seed disk (``seed.py``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import httpx
import structlog

from slices_blueprint.agent.default_image import build_default_image
from slices_blueprint.agent.protocol import FileRef, ImageSource
from slices_blueprint.agent.state import BootFiles
from slices_blueprint.agent.vmm.base import VMMError, run

log = structlog.get_logger(__name__)

FICLONE = 0x40049409
EXT4_MAGIC_OFFSET, EXT4_MAGIC = 1080, b"\x53\xef"
DEFAULT_IMAGE = "default"

class ImageError(VMMError):
    """An image could not be fetched, verified or prepared."""


class ImageRefused(ImageError):
    """An image URL this agent does not fetch from (a scheme, or a file outside image_dir)."""


class ImageCache:
    """``vmlinux``: the VMM boots an uncompressed ELF kernel (Firecracker), so the default
    image resolves to its ``vmlinux``; named images must then give one themselves.
    ``image_dir``: the only folder ``file:`` URLs may name files in (``None``: none)."""

    def __init__(self, root: Path, named: dict[str, ImageSource], *,
                 vmlinux: bool = False, image_dir: Path | None = None) -> None:
        self.root = root
        self.named = named
        self.vmlinux = vmlinux
        self.image_dir = image_dir.resolve() if image_dir else None
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._locks: dict[str, asyncio.Lock] = {}

    def names(self) -> list[str]:
        return [DEFAULT_IMAGE, *self.named]

    def check(self, image: str | ImageSource) -> None:
        """Refuse (:class:`ImageRefused`) a given image source with a URL not allowed here."""
        if isinstance(image, ImageSource):
            for ref in (image.kernel, image.initrd, image.rootfs):
                if ref is not None:
                    self.local_file(ref.url)

    def local_file(self, url: str) -> Path | None:
        """The file a ``file:`` URL names (inside ``image_dir``, symlinks resolved), ``None``
        for an http(s) URL; :class:`ImageRefused` for anything else."""
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https") and parsed.hostname:
            return None
        if parsed.scheme != "file":
            raise ImageRefused(f"{url}: only http(s):// URLs, or file: URLs inside the agent's "
                               "image directory, are allowed")
        if self.image_dir is None:
            raise ImageRefused(f"{url}: file: URLs are refused: this agent has no image "
                               "directory (SLICES_AGENT_IMAGE_DIR)")
        path = Path(unquote(parsed.path))
        if parsed.netloc not in ("", "localhost") or not path.is_absolute():
            raise ImageRefused(f"{url}: a file: URL must be an absolute local path")
        resolved = path.resolve()
        if not resolved.is_relative_to(self.image_dir):
            raise ImageRefused(f"{url}: not a file inside the image directory {self.image_dir}")
        if not resolved.is_file():
            raise ImageRefused(f"{url}: no such file in the image directory")
        return resolved

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
            try:
                digest = await self._download(ref.url, partial)
            except BaseException:
                partial.unlink(missing_ok=True)  # e.g. the disk filled up: no half-written file
                raise
            if ref.sha256 and digest != ref.sha256.lower():
                partial.unlink(missing_ok=True)
                raise ImageError(f"{ref.url}: sha256 {digest} does not match {ref.sha256}")
            os.replace(partial, target)
            log.info("agent.image_cached", url=ref.url, sha256=digest)
            return target

    async def _download(self, url: str, dest: Path) -> str:
        digest = hashlib.sha256()
        source = self.local_file(url)
        if source is not None:
            return await asyncio.to_thread(_copy_and_hash, source, dest)
        try:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60) as client, \
                    client.stream("GET", url) as response:
                response.raise_for_status()
                total = int(response.headers.get("content-length", 0))
                done, reported = 0, -10
                with _private(dest) as f:
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
            raise ImageError(f"{url}: download failed: {exc}") from exc
        return digest.hexdigest()


def _private(path: Path) -> BinaryIO:
    """``path`` opened for writing, created readable by its owner only (0600)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _copy_and_hash(source: Path, dest: Path) -> str:
    with source.open("rb") as src, _private(dest) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
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
