"""API shapes of flavors and disk images (the SLICES BI field names)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from slices_blueprint.providers.registry import PROVIDER_MODULES

FlavorType = Literal[tuple(PROVIDER_MODULES)]  # type: ignore[valid-type]  # every registered provider


class FlavorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    friendly_name: str = Field(min_length=1, max_length=200)
    description: str = ""
    flavor_type: FlavorType
    vcpus: int = Field(ge=1, le=1024)
    ram_mib: int = Field(ge=16, le=16 * 1024 * 1024)
    disk_mb: int = Field(default=0, ge=0)
    cluster_id: str = ""
    provider_ref: str | None = None
    hidden: bool = False


class FlavorOut(BaseModel):
    id: str
    friendly_name: str
    description: str
    flavor_type: str
    vcpus: int
    ram_mib: int
    disk_mb: int
    cluster_id: str
    provider_ref: str | None
    source: str
    hidden: bool
    created_at: dt.datetime


class DiskImageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    friendly_name: str = Field(min_length=1, max_length=200)
    flavor_type: FlavorType
    cluster_id: str = ""
    location: str = Field(min_length=1, max_length=1000)
    default_username: str | None = None
    min_disk_mb: int = Field(default=0, ge=0)
    min_ram_mib: int = Field(default=0, ge=0)
    short_description: str = ""
    long_description: str = ""
    tags: list[str] = []
    hidden: bool = False


class DiskImageOut(BaseModel):
    id: str
    friendly_name: str
    flavor_type: str
    cluster_id: str
    location: str
    default_username: str | None
    min_disk_mb: int
    min_ram_mib: int
    short_description: str
    long_description: str
    tags: list[str]
    source: str
    hidden: bool
    created_at: dt.datetime


class CatalogEntryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: bool


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flavor_type: FlavorType


class SyncResult(BaseModel):
    flavor_type: str
    cluster_id: str
    added: list[str]
    updated: list[str]
    hidden: list[str]
    unchanged: int
