"""API shapes for credentials: the content goes in, never comes out."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class CredentialUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, description="the credential file's text")
    selected: str | None = Field(default=None, description="the entry of the file to use (empty: the only or current one)")


class CredentialOut(BaseModel):
    kind: str
    selected: str | None
    last_checked_at: dt.datetime | None
    last_check_ok: bool | None
    last_check_error: str | None
    updated_at: dt.datetime
