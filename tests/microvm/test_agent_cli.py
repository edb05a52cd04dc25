"""The ``agent`` command group (mounted by the main CLI as ``slices-blueprint agent``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slices_blueprint.agent.cli import agent_app
from slices_blueprint.agent.default_image import READY_MARKER

needs_parts = pytest.mark.skipif(
    not (Path("/bin/busybox").exists() and shutil.which("mkfs.ext4") and shutil.which("modprobe")
         and list(Path("/boot").glob("vmlinuz-*-cloud-amd64"))),
    reason="needs busybox-static, e2fsprogs, kmod and linux-image-cloud-amd64",
)


def printed_json(output: str) -> dict:
    """The JSON document a command printed (log lines may come before it)."""
    return json.loads(output[output.index("{\n"):])


@needs_parts
def test_build_image_is_cached_and_complete(tmp_path: Path) -> None:
    first = CliRunner().invoke(agent_app, ["build-image", str(tmp_path)])
    assert first.exit_code == 0, first.output
    files = printed_json(first.output)
    for key in ("kernel", "initrd", "rootfs"):
        assert Path(files[key]).stat().st_size > 0
    assert READY_MARKER.encode() in Path(files["rootfs"]).read_bytes()
    again = CliRunner().invoke(agent_app, ["build-image", str(tmp_path)])
    assert printed_json(again.output) == files
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1


def test_reap_reports_what_it_cleaned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLICES_AGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SLICES_AGENT_NETWORK_MODE", "user")
    (tmp_path / "vms" / "half-made").mkdir(parents=True)
    result = CliRunner().invoke(agent_app, ["reap"])
    assert result.exit_code == 0, result.output
    assert printed_json(result.output)["dirs_removed"] == ["half-made"]
