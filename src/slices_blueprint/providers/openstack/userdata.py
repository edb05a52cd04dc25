"""The cloud-init user data given to nova: the experimenter's own plus their SSH keys."""

from __future__ import annotations

import base64
import email
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import yaml

KEYS_MERGE_TYPE = "list(append)+dict(recurse_array)+str()"


def build_userdata(userdata: str | None, ssh_keys: list[str]) -> str | None:
    """Base64 user data for nova: the user's own, plus a cloud-config part adding the keys."""
    if not ssh_keys:
        body = userdata
    else:
        message = MIMEMultipart()
        for part in _userdata_parts(userdata):
            message.attach(part)
        keys = MIMEText(
            "#cloud-config\n" + yaml.safe_dump({"ssh_authorized_keys": ssh_keys}), "cloud-config"
        )
        keys["Merge-Type"] = KEYS_MERGE_TYPE
        message.attach(keys)
        body = message.as_string()
    return base64.b64encode(body.encode()).decode() if body else None


def _userdata_parts(userdata: str | None) -> list[email.message.Message]:
    if not userdata:
        return []
    parsed = email.message_from_string(userdata)
    if parsed.is_multipart():
        return list(parsed.get_payload())
    return [MIMEText(userdata, "plain")]  # cloud-init detects the type from the first line

