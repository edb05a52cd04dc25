"""What the API answers about QKD networks, and the changes it takes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class NodeOut(BaseModel):
    name: str
    kme_id: str
    kme_url: str = Field(description="the KME's ETSI GS QKD 014 root: https://host:port")
    device: str | None = Field(default=None, description="the site's real QKD device behind this KME")


class DeliveryOut(BaseModel):
    """Where a bound SAE's credentials stand."""

    state: Literal["delivered", "delivering", "failed", "waiting"]
    note: str = Field(description="where they are, or what to do to deliver them")
    resource_id: str | None = Field(description="the machine (resource id) they went or go into")
    delivered_at: dt.datetime | None = Field(description="when its create or reset that placed them ended")


class SaeOut(BaseModel):
    sae_id: str
    node: str
    kme_url: str = Field(description="the KME's public URL (a bound microVM uses https://<kme_id>.qkd.internal)")
    credentials_downloaded: bool = Field(description="its private key was downloaded (once only)")
    machine: str | None = Field(default=None, description="the machine the SAE is bound to, if any")
    delivery: DeliveryOut | None = Field(default=None, description="for a bound SAE: its credentials' delivery")


class LinkOut(BaseModel):
    name: str = Field(description="<node>-<node>, as `qkd link set` names it")
    between: tuple[str, str]
    parameters: dict[str, Any]
    state: str = Field(description="generating, stopped (with the reason), or device (real devices' link)")
    state_reason: str | None
    secret_key_rate_bps: float
    qber: float
    stored_key_count: int = Field(description="keys of 256 bits in each end's pool now")
    max_key_count: int
    delivered_keys: int
    emulated: bool = Field(default=True, description="key material comes from the operating "
                           "system's CSPRNG, not from quantum states")


class NetworkOut(BaseModel):
    id: str
    name: str
    experiment_id: str
    project_id: str
    status: str = Field(description="pending (waiting for its reservation's start), active, failed or deleted")
    status_reason: str | None = Field(default=None, description="why it is pending or failed")
    expires_at: dt.datetime
    reservation_id: str | None = Field(description="the reservation it runs inside (deleted at its end)")
    created_at: dt.datetime
    nodes: list[NodeOut]
    saes: list[SaeOut]
    links: list[LinkOut]


class LinkUpdate(BaseModel):
    """Any of a link's parameters; the others keep their values."""

    model_config = ConfigDict(extra="forbid")
    length_km: float | None = None
    attenuation_db_per_km: float | None = None
    detector_efficiency: float | None = None
    dark_count_probability: float | None = None
    misalignment_error: float | None = None
    repetition_rate_hz: float | None = None
    protocol: str | None = None
    eavesdropper: float | None = Field(default=None, description="fraction of qubits intercepted")


class SaeCredentials(BaseModel):
    """Everything an SAE needs to call its KME; the private key is answered once only."""

    sae_id: str
    kme_url: str
    kme_id: str
    certificate_pem: str
    private_key_pem: str
    ca_certificate_pem: str
