"""Cloud-init user data: the experimenter's own, with a cloud-config part of ours merged in.

Used by the agent's seed (microVMs) and the OpenStack provider (nova's user data); like the
rest of ``agent/`` it imports nothing else of the package.
"""

from __future__ import annotations

import email
from collections.abc import Iterable
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any, Protocol

import yaml

MERGE_TYPE = "list(append)+dict(recurse_array)+str()"


class FileToWrite(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def mode(self) -> int: ...


def write_files(files: Iterable[FileToWrite]) -> list[dict[str, Any]]:
    """Cloud-config ``write_files`` entries, root's, with each file's permission bits."""
    return [{"path": f.path, "content": f.content, "permissions": f"0{f.mode:o}", "owner": "root:root"}
            for f in files]


def with_cloud_config(userdata: str | None, config: dict[str, Any]) -> str | None:
    """``userdata`` with ``config`` merged in (lists appended): a MIME multipart of the user's
    parts and ours; ``userdata`` unchanged when ``config`` is empty."""
    if not config:
        return userdata
    ours = "#cloud-config\n" + yaml.safe_dump(config)
    if not userdata:
        return ours
    message = MIMEMultipart()
    for part in _parts(userdata):
        message.attach(part)
    part = MIMEText(ours, "cloud-config")
    part["Merge-Type"] = MERGE_TYPE
    message.attach(part)
    return message.as_string()


def _parts(userdata: str) -> list[Message]:
    parsed = email.message_from_string(userdata)
    if parsed.is_multipart():
        return list(parsed.get_payload())
    return [MIMEText(userdata, "plain")]  # cloud-init detects the type from the first line
