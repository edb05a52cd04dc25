"""API shapes of quotas: limits (None = unlimited) and what a project uses."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FLAVOR_TYPE_PATTERN = r"^[a-z0-9][-a-z0-9]{0,31}$"
FlavorType = Annotated[str, StringConstraints(pattern=FLAVOR_TYPE_PATTERN)]
Limit = Annotated[int | None, Field(ge=0)]


class QuotaLimits(BaseModel):
    """Limits on a project's live resources; null means unlimited."""

    instances: Limit = None
    vcpus: Limit = None
    ram_mib: Limit = None
    flavor_types: dict[FlavorType, Limit] = Field(
        default_factory=dict, description='live resources per flavor type, e.g. {"microvm": 4}',
        json_schema_extra={"propertyNames": {"pattern": FLAVOR_TYPE_PATTERN}},
    )


class QuotaUpdate(QuotaLimits):
    """PUT body: the project's whole override. A field left out inherits the site default
    (so ``{}`` returns the project to the defaults); ``null`` is unlimited."""

    model_config = ConfigDict(extra="forbid")


class QuotaUsage(BaseModel):
    instances: int = 0
    vcpus: int = 0
    ram_mib: int = 0
    flavor_types: dict[str, int] = Field(default_factory=dict)


class QuotaOut(BaseModel):
    project_id: str
    limits: QuotaLimits = Field(
        description="in effect: the site defaults with the project's override"
    )
    usage: QuotaUsage = Field(description="the project's live (not deleted) resources")
    override: dict = Field(description="what an admin set for this project (empty: site defaults)")


class QuotaExcess(BaseModel):
    """One limit a request would pass."""

    limit: str
    used: int
    requested: int
    allowed: int
