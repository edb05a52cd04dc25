"""Dev-mode routes: the local issuer's discovery document, JWKS, and token minting.

Every route answers 404 unless dev mode is on (which needs a loopback-only listener)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from slices_blueprint.core import dev_issuer
from slices_blueprint.core.deps import SettingsDep
from slices_blueprint.core.errors import NotFound

router = APIRouter(prefix="/dev", tags=["dev mode"], include_in_schema=False)  # not the BI API


class DevTokenRequest(BaseModel):
    user: str = Field(default="alice", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    project: str = Field(default="demo", pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    experiment: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    lifetime_s: int = Field(default=3600, ge=60, le=7 * 86400)
    experiment_days: int = Field(default=7, ge=1, le=365)
    ssh_key: str | None = None


class DevToken(BaseModel):
    token: str
    kind: str
    ids: dict[str, str]


def _require_dev(settings: SettingsDep) -> None:
    if not settings.dev_mode:
        raise NotFound("dev mode is off")


@router.get("/issuer/.well-known/openid-configuration")
async def discovery(settings: SettingsDep) -> dict:
    _require_dev(settings)
    return {"issuer": settings.dev_issuer, "jwks_uri": f"{settings.dev_issuer}/jwks.json",
            "id_token_signing_alg_values_supported": ["ES256"]}


@router.get("/issuer/jwks.json")
async def jwks(settings: SettingsDep) -> dict:
    _require_dev(settings)
    return dev_issuer.dev_keyset(settings).as_dict(private=False)


@router.post("/tokens", response_model=DevToken)
async def mint(body: DevTokenRequest, settings: SettingsDep) -> DevToken:
    """A user id-token, or an experiment JWT when ``experiment`` is given (dev mode only)."""
    _require_dev(settings)
    token = dev_issuer.mint_dev_token(settings, **body.model_dump())
    return DevToken(token=token, kind="experiment" if body.experiment else "user",
                    ids=dev_issuer.dev_ids(body.user, body.project, body.experiment))
