"""The cloud-init user data given to nova: the experimenter's own, plus their SSH keys and
the files to place in the machine (``write_files``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from slices_blueprint.agent.cloudinit import with_cloud_config, write_files
from slices_blueprint.providers.base import GuestFile


def build_userdata(userdata: str | None, ssh_keys: list[str], files: Sequence[GuestFile] = ()) -> str | None:
    """Base64 user data for nova: the user's own, plus a cloud-config part adding the keys
    and writing the files."""
    ours: dict[str, Any] = {}
    if ssh_keys:
        ours["ssh_authorized_keys"] = ssh_keys
    if files:
        ours["write_files"] = write_files(files)
    body = with_cloud_config(userdata, ours)
    return base64.b64encode(body.encode()).decode() if body else None
