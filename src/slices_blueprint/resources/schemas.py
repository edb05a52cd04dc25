"""API shapes of compute resources (SLICES BI field names)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from slices_blueprint.core.errors import Invalid
from slices_blueprint.core.ids import id_schema
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.validation import UtcDatetime, refuse_repeats

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SSH_KEY_PATTERN = r"^\s*(ssh-|ecdsa-|sk-)\S*\s+\S"  # a key type, then its base64 (a comment may follow)


def _keys_look_like_keys(keys: list[str]) -> list[str]:
    for key in keys:
        if not re.match(SSH_KEY_PATTERN, key):
            raise ValueError(f"not an OpenSSH public key: {key[:40]!r}")
    return [k.strip() for k in keys]


SshKeys = Annotated[list[str], Field(max_length=32, json_schema_extra={
    "items": {"type": "string", "pattern": SSH_KEY_PATTERN}}), AfterValidator(_keys_look_like_keys)]
"""OpenSSH public keys, stripped (32 at most)."""


class NetworkInterface(BaseModel):
    model_config = ConfigDict(extra="forbid")

    network: str = Field(min_length=1, max_length=255)


class TokenIn(BaseModel):
    jwt: str = Field(min_length=1, max_length=16384)


class ResourceSpec(BaseModel):
    """One resource of a request."""

    model_config = ConfigDict(extra="forbid")

    friendly_name: str = Field(pattern=NAME_PATTERN, description="DNS label, unique among the experiment's live resources")
    disk_image_id: str = Field(json_schema_extra=id_schema("image"))
    flavor_id: str = Field(json_schema_extra=id_schema("flavor"))
    userdata: str | None = Field(default=None, description="cloud-init user data (size capped)")
    network_interfaces: list[str | NetworkInterface] = Field(default_factory=list, max_length=8)
    public_ipv4: bool = False
    ssh_authorized_keys: SshKeys = Field(default_factory=list)
    request_config: dict[str, Any] = Field(
        default_factory=dict, description="provider-specific options (size as JSON capped)")

    def network_names(self) -> list[str]:
        return [n if isinstance(n, str) else n.network for n in self.network_interfaces]


class ResourcesRequest(BaseModel):
    """POST /resources: create one or several resources in the caller's experiment."""

    model_config = ConfigDict(extra="forbid")

    request_id: uuid.UUID = Field(description="idempotency key: the same id answers the same task")
    expires_at: UtcDatetime | None = Field(default=None, description="defaults to the site's default lifetime, capped at the experiment's expiry")
    resources: list[ResourceSpec] = Field(min_length=1, max_length=100)
    tokens: list[TokenIn] = Field(default_factory=list, max_length=4, description="the user's id-token")
    reservation_id: str | None = Field(
        default=None, json_schema_extra=id_schema("reservation"),
        description="run inside this reservation (the experiment's, or its project's): created at its start, "
                    "expiring at its end at the latest, deleted when it ends")

    @field_validator("resources")
    @classmethod
    def _names_unique(cls, items: list[ResourceSpec]) -> list[ResourceSpec]:
        refuse_repeats((i.friendly_name for i in items), "friendly_name")
        return items


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["expires_at"]}, {"required": ["duration_hours"]}]})

    # exactly one of the two; not nullable (an explicit null is refused like a wrong type)
    expires_at: UtcDatetime = Field(default=None)  # type: ignore[assignment]
    duration_hours: float = Field(default=None, gt=0, le=24 * 366, description="from now")  # type: ignore[assignment]

    def requested(self) -> dt.datetime:
        """The expiry asked for (422 unless exactly one of the two fields is given)."""
        if (self.expires_at is None) == (self.duration_hours is None):
            raise Invalid("give exactly one of expires_at or duration_hours")
        return self.expires_at or utcnow() + dt.timedelta(hours=self.duration_hours)


class ExtendResult(BaseModel):
    """What an extend granted: the expiry never moves earlier."""

    id: str
    requested_expires_at: dt.datetime
    expires_at: dt.datetime = Field(description="max(the current expiry, min(requested, the experiment's expiry))")
    capped: bool = Field(description="the expiry granted is earlier than the one requested")
    reason: str = Field(description="why: as asked, capped (at what), or unchanged (the current expiry is later)")


class ResourceOut(BaseModel):
    id: str
    friendly_name: str
    experiment_id: str
    project_id: str
    created_by: str | None
    flavor_id: str
    disk_image_id: str
    flavor_type: str
    status: str
    status_reason: str | None
    provider_resource_id: str | None
    access: dict[str, Any]
    ssh_command: str | None
    private_ipv4: str | None = Field(default=None, description="the address on the experiment's own network")
    console_url: str | None = Field(default=None, description="the provider's console, where it has one")
    expires_at: dt.datetime
    reservation_id: str | None = Field(description="the reservation it runs inside (deleted at its end)")
    created_at: dt.datetime
    updated_at: dt.datetime


class EventOut(BaseModel):
    at: dt.datetime
    actor: str
    action: str
    outcome: str
    message: str | None
    detail: dict[str, Any]
