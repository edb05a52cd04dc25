"""The benchmark's minimal FastAPI app: the same token check and the same SQL as the
service's POST /resources and GET /flavors, with none of the service's framework around it.

Run by ``bench_api.py``: ``python bench/minimal_app.py PORT DATABASE_URL JWK_FILE ISSUER AUDIENCE POOL``
(POOL: PostgreSQL sessions at most, as the service's pool).
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent))

from same_shape import accept

from slices_blueprint.core.ids import body_id

port, database_url, jwk_file, issuer, audience, pool_size = sys.argv[1:7]
keys = KeySet([ECKey.import_key(json.loads(Path(jwk_file).read_text()))])
pool = AsyncConnectionPool(database_url, min_size=1, max_size=int(pool_size), open=False)


def verify(authorization: str) -> dict:
    """Signature, issuer, audience and expiry, as the service checks them."""
    try:
        claims = dict(jwt.decode(authorization.removeprefix("Bearer "), keys, algorithms=["ES256"]).claims)
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer}, sub={"essential": True},
                              exp={"essential": True}, aud={"essential": True, "values": [audience]}).validate(claims)
    except (JoseError, ValueError) as exc:
        raise HTTPException(401, str(exc)) from exc
    return claims


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI):
    await pool.open()
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/resources", status_code=202)
async def create(body: dict, authorization: str = Header()) -> dict:
    claims = verify(authorization)
    spec = body["resources"][0]
    async with pool.connection() as conn:
        batch = await accept(conn, claims["sub"], uuid.UUID(body["request_id"]), spec["friendly_name"],
                             body_id(spec["flavor_id"], "flavor", "flavor_id"),
                             body_id(spec["disk_image_id"], "image", "disk_image_id"))
    if batch is None:
        raise HTTPException(422, "unknown experiment, flavor or image")
    return {"id": str(batch), "status": "pending"}


@app.get("/flavors")
async def flavors(authorization: str = Header()) -> list[dict]:
    claims = verify(authorization)
    async with pool.connection() as conn:
        await conn.execute("SELECT id FROM experiments WHERE id = %s", (claims["sub"],))
        cursor = await conn.execute("SELECT id, friendly_name, flavor_type, vcpus, ram_mib FROM flavors "
                                    "WHERE NOT hidden ORDER BY flavor_type, vcpus, ram_mib, friendly_name")
        return [{"id": str(r[0]), "friendly_name": r[1], "flavor_type": r[2], "vcpus": r[3], "ram_mib": r[4]}
                for r in await cursor.fetchall()]


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)
