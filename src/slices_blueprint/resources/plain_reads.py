"""Resources read to be shown, never changed: plain SQL on a psycopg connection
(``Database.plain_read``), no ORM session.

Two forms: :class:`ResourceRow` values (the web pages), and each row's API JSON (the API's
reads), remembered by the row's bytes as PostgreSQL sent them: the same bytes are the same
resource as it was, so the same JSON; a changed row has other bytes and is shown anew.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import Any, NamedTuple

import psycopg
import pydantic_core
from psycopg.pq import Format
from psycopg.types.json import JsonbBinaryLoader
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute

from slices_blueprint.core.errors import NotFound
from slices_blueprint.core.responses import plain_json
from slices_blueprint.identity.caller import Caller
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.service import resource_view

LISTED = (ComputeResource.id, ComputeResource.friendly_name, ComputeResource.experiment_id,
          ComputeResource.project_id, ComputeResource.created_by, ComputeResource.flavor_id,
          ComputeResource.disk_image_id, ComputeResource.provider, ComputeResource.status,
          ComputeResource.status_reason, ComputeResource.provider_resource_id, ComputeResource.access,
          ComputeResource.expires_at, ComputeResource.reservation_id, ComputeResource.created_at,
          ComputeResource.updated_at)
"""What a listing shows: the request and provider details stay unread (JSON is costly)."""


class ResourceRow(NamedTuple):
    """A :data:`LISTED` row read with plain SQL (:func:`read_plain`, :func:`list_plain`)."""

    id: uuid.UUID
    friendly_name: str
    experiment_id: str
    project_id: str
    created_by: str | None
    flavor_id: uuid.UUID
    disk_image_id: uuid.UUID
    provider: str
    status: str
    status_reason: str | None
    provider_resource_id: str | None
    access: dict[str, Any]
    expires_at: dt.datetime
    reservation_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


LISTED_SQL = ", ".join(column.expression.name for column in LISTED)
assert ResourceRow._fields == tuple(column.key for column in LISTED)  # read by position

SHOWN_ROWS = 4096
"""Rows whose API JSON each process remembers (2.4 KB each with their bytes: 10 MB)."""


class _ParsedJsonb(JsonbBinaryLoader):
    """``jsonb`` in binary, parsed by pydantic's JSON parser: the same values as psycopg's
    ``json.loads``, in a fraction of its time."""

    _loads = staticmethod(pydantic_core.from_json)


def _binary_loader(oid: int) -> Callable[[bytes], Any]:
    """What reads a value of type ``oid`` sent in binary (``jsonb`` by :class:`_ParsedJsonb`)."""
    loader = _ParsedJsonb if oid == psycopg.postgres.types["jsonb"].oid else \
        psycopg.postgres.adapters.get_loader(oid, Format.BINARY)
    assert loader is not None, f"psycopg reads no type {oid} in binary"
    return loader(oid).load  # no connection: timestamps in UTC, as the service's sessions read them


def _type_oid(column: InstrumentedAttribute[Any]) -> int:
    """The PostgreSQL type of a column, as psycopg knows it (``VARCHAR(63)`` is ``varchar``)."""
    declared = column.type.compile(dialect=postgresql.dialect())
    return psycopg.postgres.types[re.sub(r"\(.*\)", "", declared).lower()].oid


_LISTED_OIDS = tuple(_type_oid(column) for column in LISTED)
_LOADS = tuple(_binary_loader(oid) for oid in _LISTED_OIDS)
_AS_SENT = psycopg.postgres.adapters.get_loader(psycopg.postgres.types["bytea"].oid, Format.BINARY)
"""A loader keeping a binary value's bytes as they are."""


def _resource_rows(_cursor: object) -> Callable[[Sequence[Any]], ResourceRow]:
    """psycopg's row factory of :class:`ResourceRow` (built from the values, by position)."""
    return ResourceRow._make


@lru_cache(maxsize=SHOWN_ROWS)
def _shown(sent: tuple[bytes | None, ...], site: str) -> bytes:
    """The API JSON of a row given as the bytes PostgreSQL sent: read, viewed, serialized."""
    row = ResourceRow._make(None if value is None else load(value) for load, value in zip(_LOADS, sent, strict=True))
    return plain_json(resource_view(row, site))


@cache
def _plain_select(scope: str, *, one: bool = False, include_deleted: bool = False, status: bool = False,
                  after: bool = False) -> bytes:
    """The SQL text of a plain read: :data:`LISTED` columns of the resources ``scope`` (a
    ``Caller.visible_sql`` condition) selects, and one by id, or a page in id order (live ones
    unless ``include_deleted``, of ``status`` if given, after the id ``after``;
    ``status <> 'deleted'`` written out: the partial indexes match).
    Built once per shape."""
    where = [scope]
    if one:
        where.append("id = %(id)s")
    else:
        if not include_deleted:
            where.append("status <> 'deleted'")
        if status:
            where.append("status = %(status)s")
        if after:
            where.append("id > %(after)s")
    sql = f"SELECT {LISTED_SQL} FROM compute_resources WHERE {' AND '.join(where)}"
    return (sql if one else f"{sql} ORDER BY id LIMIT %(limit)s").encode()


def _page(caller: Caller, *, include_deleted: bool, status: str | None, limit: int,
          after: uuid.UUID | None) -> tuple[bytes, dict[str, Any]]:
    """The SQL and parameters of a page of the resources the caller may see."""
    scope, params = caller.visible_sql()
    params = {**params, "limit": limit}
    if status:
        params["status"] = status
    if after:
        params["after"] = after
    return _plain_select(scope, include_deleted=include_deleted, status=bool(status), after=bool(after)), params


def _one(caller: Caller, resource_id: uuid.UUID) -> tuple[bytes, dict[str, Any]]:
    """The SQL and parameters of one resource the caller may see."""
    scope, params = caller.visible_sql()
    return _plain_select(scope, one=True), {**params, "id": resource_id}


async def _rows(conn: psycopg.AsyncConnection, query: tuple[bytes, dict[str, Any]]) -> list[ResourceRow]:
    """Rows of ``query`` as :class:`ResourceRow`: results in binary (timestamps and UUIDs are
    read without parsing text), ``access`` by :class:`_ParsedJsonb` (this cursor's only).
    Decoded by psycopg as it reads them, not from :func:`_shown_rows`' bytes: a third
    cheaper for a web page's 500 rows (4.1-4.6 against 5.4-6.4 ms, measured)."""
    async with conn.cursor(row_factory=_resource_rows) as cursor:
        cursor.adapters.register_loader("jsonb", _ParsedJsonb)
        await cursor.execute(*query, binary=True)
        return await cursor.fetchall()


class ShownPage(NamedTuple):
    """Resources as their API JSON, and the id of the last one."""

    items: list[bytes]
    last_id: uuid.UUID | None


async def _shown_rows(conn: psycopg.AsyncConnection, query: tuple[bytes, dict[str, Any]], site: str) -> ShownPage:
    """The API JSON of each row of ``query``: its values kept as sent, in binary (this
    cursor's loaders), then :func:`_shown`."""
    async with conn.cursor() as cursor:
        for oid in set(_LISTED_OIDS):
            cursor.adapters.register_loader(oid, _AS_SENT)
        await cursor.execute(*query, binary=True)
        rows = await cursor.fetchall()
    return ShownPage([_shown(sent, site) for sent in rows], uuid.UUID(bytes=rows[-1][0]) if rows else None)


def _one_of(rows: list[Any]) -> Any:
    """The one row of a read by id; otherwise the 404 of ``service.get_resource`` (another
    experiment's resource is "no such resource", like a missing one)."""
    if not rows:
        raise NotFound("no such resource")
    return rows[0]


async def list_plain(conn: psycopg.AsyncConnection, caller: Caller, *, include_deleted: bool,
                     status: str | None, limit: int, after: uuid.UUID | None) -> list[ResourceRow]:
    r"""A page of the resources the caller may see, in id order, as :class:`ResourceRow`\ s."""
    return await _rows(conn, _page(caller, include_deleted=include_deleted, status=status, limit=limit, after=after))


async def read_plain(conn: psycopg.AsyncConnection, caller: Caller, resource_id: uuid.UUID) -> ResourceRow:
    """One resource the caller may see, as a :class:`ResourceRow` (404 otherwise)."""
    return _one_of(await _rows(conn, _one(caller, resource_id)))


async def list_shown(conn: psycopg.AsyncConnection, caller: Caller, site: str, *, include_deleted: bool,
                     status: str | None, limit: int, after: uuid.UUID | None) -> ShownPage:
    """A page of :func:`list_plain`, as each resource's API JSON."""
    query = _page(caller, include_deleted=include_deleted, status=status, limit=limit, after=after)
    return await _shown_rows(conn, query, site)


async def read_shown(conn: psycopg.AsyncConnection, caller: Caller, site: str, resource_id: uuid.UUID) -> bytes:
    """:func:`read_plain`'s resource as its API JSON (404 otherwise)."""
    return _one_of((await _shown_rows(conn, _one(caller, resource_id), site)).items)
