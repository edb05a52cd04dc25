# ruff: noqa: F811  (the fixtures imported from host_fixtures are test arguments)
"""The agent's token cannot read host files through image URLs: a real agent process is asked
to boot "images" at a root-only file outside its image directory (directly, through ``..``,
through a symlink), from a non-HTTP scheme, or with no image directory at all; each is a 422
naming the problem, and nothing reaches the image cache. Files inside the image directory are
cached readable by the agent's user only."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from slices_blueprint.agent.images import ImageCache
from slices_blueprint.agent.protocol import FileRef
from tests.security.agents import start_agent
from tests.security.host_fixtures import agents  # noqa: F401 (fixture)

SECRET = b"root:$y$j9T$not-for-guests:19000:0:99999:7:::\n"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A 0600 file outside any image directory, like /etc/shadow."""
    outside = tmp_path / "etc"
    outside.mkdir()
    path = outside / "shadow"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def vm(kernel_url: str) -> dict:
    return {"id": "vm-steal", "name": "steal", "vcpus": 1, "memory_mib": 128, "disk_mib": 64,
            "image": {"kernel": {"url": kernel_url}, "rootfs": {"url": kernel_url}}}


def cached_bytes(data_dir: Path) -> list[bytes]:
    cache = data_dir / "cache"
    return [p.read_bytes() for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def test_image_urls_cannot_read_host_files(tmp_path: Path, secret_file: Path, agents) -> None:
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "shadow-link").symlink_to(secret_file)
    agent = start_agent(tmp_path / "agent", "images", image_dir=str(image_dir))
    bare = start_agent(tmp_path / "bare", "no-image-dir")  # image_dir unset
    agents.extend([agent, bare])
    outside = "not a file inside the image directory"
    attempts = [
        (agent, secret_file.as_uri(), outside),
        (agent, f"file://{image_dir}/../etc/shadow", outside),
        (agent, (image_dir / "shadow-link").as_uri(), outside),
        (agent, f"file://localhost{secret_file}", outside),
        (agent, f"file://other.invalid{image_dir}/k", "must be an absolute local path"),
        (agent, f"{image_dir}/kernel", "only http(s):// URLs"),
        (agent, "ftp://mirror.invalid/vmlinuz", "only http(s):// URLs"),
        (agent, "gopher://127.0.0.1:70/etc/shadow", "only http(s):// URLs"),
        (bare, secret_file.as_uri(), "this agent has no image directory"),
    ]
    for target, url, reason in attempts:
        with target.client() as api:
            answer = api.post("/v1/vms", json=vm(url))
            assert answer.status_code == 422, (url, answer.status_code, answer.text)
            assert reason in answer.json()["detail"], (url, answer.json())
            assert api.get("/v1/vms").json() == []  # refused before any VM record was made
    for target in (agent, bare):
        assert all(SECRET not in data for data in cached_bytes(target.data_dir))
        assert stat.S_IMODE((target.data_dir / "cache").stat().st_mode) == 0o700


async def test_files_inside_the_image_dir_are_cached_for_root_only(tmp_path: Path) -> None:
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    kernel = image_dir / "vmlinuz"
    kernel.write_bytes(b"kernel")
    kernel.chmod(0o644)
    old_umask = os.umask(0o022)
    try:
        cache = ImageCache(tmp_path / "cache", {}, image_dir=image_dir)
        cached = await cache.fetch(FileRef(url=kernel.as_uri(),
                                           sha256=hashlib.sha256(b"kernel").hexdigest()))
    finally:
        os.umask(old_umask)
    assert cached.read_bytes() == b"kernel"
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
