"""API shapes of equipment, reservations, availability and reserved-hours limits."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from slices_blueprint.core.validation import UtcDatetime

NAME_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][-a-z0-9_.]{0,62}$")]
Hours = Annotated[float, Field(gt=0, le=24 * 3650)]
MAX_ITEMS = 32


class EquipmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(description='what it is, e.g. "qkd-device-pair", "fibre-spool", "fpga"')
    name: Name = Field(description="unique at this site")
    attributes: dict[Annotated[str, StringConstraints(max_length=63)], Any] = Field(
        default_factory=dict, max_length=32, description="e.g. wavelength_nm, length_km")
    site: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="where it is (default: this site's id)")
    hidden: bool = False


class EquipmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: bool | None = None
    attributes: dict[Annotated[str, StringConstraints(max_length=63)], Any] | None = Field(default=None, max_length=32)


class EquipmentOut(BaseModel):
    id: str
    kind: str
    name: str
    site: str
    attributes: dict[str, Any]
    hidden: bool
    created_at: dt.datetime


class KindCount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    count: int = Field(default=1, ge=1, le=MAX_ITEMS)


class ReservationAsk(BaseModel):
    """What a reservation holds: equipment by name, any N items of a kind, host capacity."""

    model_config = ConfigDict(extra="forbid")

    equipment: list[Name] = Field(default_factory=list, max_length=MAX_ITEMS, description="items by name")
    any_of: list[KindCount] = Field(default_factory=list, max_length=8,
                                    description='"any N of kind X": free items are picked')
    vcpus: int = Field(default=0, ge=0, le=1_000_000, description="microVM host vCPUs")
    ram_mib: int = Field(default=0, ge=0, le=1 << 40, description="microVM host memory, MiB")


class ReservationCreate(ReservationAsk):
    project_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="with a user token: which of your projects (default: your only one); "
                                  "an experiment token reserves for its experiment")
    starts_at: UtcDatetime | None = Field(default=None, description="default: now")
    ends_at: UtcDatetime | None = Field(default=None, description="give ends_at or hours")
    hours: Hours | None = None


class ReservationExtend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ends_at: UtcDatetime | None = Field(default=None, description="the new end (later than the current)")
    hours: Hours | None = Field(default=None, description="or: hours added to the current end")


class ReservationCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class HeldItem(BaseModel):
    name: str
    kind: str


class ReservationOut(BaseModel):
    id: str
    project_id: str
    experiment_id: str | None
    created_by: str | None
    status: str = Field(description="scheduled, active, ended or cancelled")
    starts_at: dt.datetime
    ends_at: dt.datetime
    seconds_left: int = Field(description="until it ends (0 once ended or cancelled)")
    equipment: list[HeldItem]
    bound: list[str] = Field(description='what runs inside it and is deleted at its end, e.g. "resource vm-1"')
    vcpus: int
    ram_mib: int
    request: dict[str, Any] = Field(description="what was asked, as asked")
    ending_soon: bool = Field(description="the warning before its end was given")
    cancelled_at: dt.datetime | None
    cancelled_by: str | None
    cancel_reason: str | None
    created_at: dt.datetime


class Slot(BaseModel):
    starts_at: dt.datetime
    ends_at: dt.datetime


class AvailabilityOut(BaseModel):
    slots: list[Slot] = Field(description="the next start times at which the request fits, earliest first")
    capacity: dict[str, int] = Field(description="the microVM hosts' vCPUs and ram_mib")


class ReservationLimitUpdate(BaseModel):
    """PUT body: ``{"max_hours": N}`` (``null``: unlimited); ``{}`` restores the site default."""

    model_config = ConfigDict(extra="forbid")

    max_hours: int | None = Field(default=None, ge=0, le=10_000_000)


class ReservationLimitOut(BaseModel):
    project_id: str
    max_hours: int | None = Field(description="in effect (null: unlimited)")
    reserved_hours: float = Field(description="held by the project's scheduled and active reservations")
    override: dict[str, Any] = Field(description="what an admin set (empty: the site default)")
