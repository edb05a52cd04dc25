"""SLICES TypeIDs: ``<type>_<site>_<26 base32 chars of a UUID>``.

The database stores plain UUIDs (v7, so they sort by creation time); the API shows TypeIDs
carrying our site id, as the SLICES BI API does.
"""

from __future__ import annotations

import functools
import re
import uuid

import uuid_utils
from typeid import base32

_ID = re.compile(
    r"^(?P<type>[a-z]+)_(?P<site>[a-z0-9][a-z0-9.\-]*)_(?P<suffix>[0-7][0-9a-hjkmnp-tv-z]{25})$"
)


def id_schema(type_: str, *, or_empty: bool = False) -> dict[str, str]:
    """The OpenAPI description of a ``type_`` id (documented, not enforced by the schema:
    :func:`parse_id` refuses a bad one with a message saying what an id looks like)."""
    pattern = rf"{type_}_[a-z0-9][a-z0-9.\-]*_[0-7][0-9a-hjkmnp-tv-z]{{25}}"
    return {"pattern": f"^(|{pattern})$" if or_empty else f"^{pattern}$"}


class InvalidId(ValueError):
    """A string that is not a TypeID of the expected type."""


def new_uuid() -> uuid.UUID:
    """A new UUIDv7 as a standard-library UUID."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


@functools.lru_cache(maxsize=65536)
def format_id(type_: str, site: str, value: uuid.UUID) -> str:
    """The TypeID of ``value`` for objects of ``type_`` at ``site`` (the last ones formatted
    are remembered: a listed page formats three ids a row)."""
    return f"{type_}_{site}_{base32.encode(value.bytes)}"


def parse_id(value: str, type_: str, site: str | None = None) -> uuid.UUID:
    """The UUID inside a TypeID of ``type_`` (of ``site`` when given, else of any site);
    :class:`InvalidId` otherwise."""
    match = _ID.match(value)
    if not match or match["type"] != type_:
        raise InvalidId(f"{value!r} is not a {type_} id (expected {type_}_<site>_<26 chars>)")
    if site is not None and match["site"] != site:
        raise InvalidId(f"{value!r} is an id of site {match['site']}, not {site}")
    return uuid.UUID(bytes=bytes(base32.decode(match["suffix"])))


def name_uuid(name: str) -> uuid.UUID:
    """A stable UUID for a name (used for dev-mode users, projects and experiments)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"slices-blueprint:{name}")


def path_id(value: str, type_: str) -> uuid.UUID:
    """Parse an id from a URL path: a malformed id is simply not found (404)."""
    from slices_blueprint.core.errors import NotFound

    try:
        return parse_id(value, type_)
    except InvalidId as exc:
        raise NotFound(str(exc)) from exc


def body_id(value: str, type_: str, field: str) -> uuid.UUID:
    """Parse an id from a request body: a malformed id is invalid input (422)."""
    from slices_blueprint.core.errors import Invalid

    try:
        return parse_id(value, type_)
    except InvalidId as exc:
        raise Invalid(f"{field}: {exc}") from exc
