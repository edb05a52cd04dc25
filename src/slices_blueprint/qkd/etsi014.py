"""The data formats of ETSI GS QKD 014 v1.1.1 (key delivery), field names as the standard
spells them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KEY_SIZE = 256  # default key size, bits
MIN_KEY_SIZE = 64
MAX_KEY_SIZE = 8192
MAX_KEY_PER_REQUEST = 128
MAX_SAE_ID_COUNT = 8  # additional slaves of one multicast key


class Status(BaseModel):
    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int
    status_extension: dict[str, Any] | None = None


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int = Field(default=1, ge=1, le=MAX_KEY_PER_REQUEST)
    size: int = Field(default=KEY_SIZE, ge=MIN_KEY_SIZE, le=MAX_KEY_SIZE, multiple_of=8)
    additional_slave_SAE_IDs: list[str] = Field(default_factory=list, max_length=MAX_SAE_ID_COUNT)
    extension_mandatory: list[dict[str, Any]] = Field(default_factory=list)
    extension_optional: list[dict[str, Any]] = Field(default_factory=list)


class Key(BaseModel):
    key_ID: str
    key: str  # base64


class KeyContainer(BaseModel):
    keys: list[Key]


class KeyIdEntry(BaseModel):
    key_ID: str
    key_ID_extension: dict[str, Any] | None = None


class KeyIds(BaseModel):
    key_IDs: list[KeyIdEntry] = Field(min_length=1, max_length=MAX_KEY_PER_REQUEST)
    key_IDs_extension: dict[str, Any] | None = None


class Error(BaseModel):
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)
