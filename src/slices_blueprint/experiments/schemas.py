"""The experiment file (schema version 1) and the plan that makes an experiment match it.

No field holds a secret: SSH public keys given in the request are public, the account's key
is not written, and QKD networks are their descriptions (no certificates, no keys)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slices_blueprint.core.validation import Integer, UtcDatetime, refuse_repeats
from slices_blueprint.qkd.description import NetworkDescription
from slices_blueprint.reservations.schemas import ReservationAsk
from slices_blueprint.resources.schemas import NAME_PATTERN, EventOut, SshKeys
from slices_blueprint.tasks.schemas import TaskOut

SCHEMA_VERSION = 1


class FlavorRef(BaseModel):
    """A flavor by name, with what identifies it at its provider."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    flavor_type: str = Field(min_length=1, max_length=32)
    provider_ref: str | None = Field(default=None, max_length=200, description="the provider's flavor id")
    vcpus: Integer = Field(ge=0, le=100_000)
    ram_mib: Integer = Field(ge=0, le=1 << 40)
    disk_mb: Integer = Field(default=0, ge=0, le=1 << 50)


class ImageRef(BaseModel):
    """A disk image by name and by location (provider image id, or container image with its
    digest): the location is what identifies the same image on another site."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    flavor_type: str = Field(min_length=1, max_length=32)
    location: str = Field(min_length=1, max_length=1000)


class ResourceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    flavor: FlavorRef
    image: ImageRef
    userdata: str | None = Field(default=None, max_length=1 << 20)
    request_config: dict[str, Any] = Field(default_factory=dict)
    network_interfaces: list[str] = Field(default_factory=list, max_length=8)
    public_ipv4: bool = False
    ssh_authorized_keys: SshKeys = Field(default_factory=list)


class ReservationEntry(ReservationAsk):
    """What a reservation asks for, when it starts and how long it lasts."""

    start: UtcDatetime
    duration_hours: float = Field(gt=0, le=24 * 366 * 5)


class ExperimentFile(BaseModel):
    """One experiment: its live resources, QKD networks and reservations."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION
    resources: list[ResourceEntry] = Field(default_factory=list, max_length=100)
    qkd_networks: list[NetworkDescription] = Field(default_factory=list, max_length=16)
    reservations: list[ReservationEntry] = Field(default_factory=list, max_length=32)

    @field_validator("resources", "qkd_networks")
    @classmethod
    def _names_unique(cls, items: list[Any]) -> list[Any]:
        refuse_repeats((i.name for i in items), "name")
        return items


Action = Literal["create", "change", "delete"]


class PlanStep(BaseModel):
    kind: Literal["resource", "qkd_network", "reservation"]
    action: Action
    name: str = Field(description="the resource's or network's name; a reservation's summary")
    how: str = Field(description="what applying does, e.g. 'delete, then create' or 'PATCH link alice-bob'")
    changes: list[str] = Field(default_factory=list, description="the fields that differ")


class PlanOut(BaseModel):
    steps: list[PlanStep]
    missing: list[str] = Field(default_factory=list, description="flavors and images this site lacks")


class ApplyOut(BaseModel):
    plan: PlanOut
    task: TaskOut = Field(description="the batch task of the resource operations (GET …/tasks/{id})")


class ExperimentRecord(BaseModel):
    """What an RO-Crate packs: the file, the audit trail, and the run's metadata."""

    file: ExperimentFile
    events: list[EventOut]
    metadata: dict[str, Any]
