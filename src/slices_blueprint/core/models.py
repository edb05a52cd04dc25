"""The declarative base and column helpers shared by every domain's models."""

from __future__ import annotations

import datetime as dt
import uuid
from functools import cache
from typing import TypeVar

import structlog
from sqlalchemy import DateTime, MetaData, delete, func, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    InstrumentedAttribute,
    Mapped,
    make_transient_to_detached,
    mapped_column,
)

from slices_blueprint.core.ids import new_uuid

log = structlog.get_logger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


ModelT = TypeVar("ModelT", bound=Base)


def detached_copy(row: ModelT) -> ModelT:
    """A copy of ``row``'s columns that belongs to no session (for an in-process cache: bring it
    into a session with ``session.merge(copy, load=False)``, no query)."""
    state = inspect(row)
    copy = type(row)(**{a.key: getattr(row, a.key) for a in state.mapper.column_attrs})
    make_transient_to_detached(copy)
    return copy


def new_row(model: type[ModelT], **values: object) -> ModelT:
    """A new ``model`` object holding ``values`` as a loaded row holds its own: no attribute
    events (a sixth of the constructor's time), for a row written with Core
    (:class:`.direct_sql.Writes`, :func:`set_values`); added to a session, it is inserted
    with these values all the same."""
    row = model.__mapper__.class_manager.new_instance()
    row.__dict__.update(values)
    return row


@cache
def _column_keys(model: type[Base]) -> tuple[str, ...]:
    return tuple(attribute.key for attribute in inspect(model).column_attrs)


def set_values(row: Base) -> dict[str, object]:
    """The column values set on ``row`` (for a Core insert of a new object)."""
    values = row.__dict__  # the instance's state: what the columns hold
    return {key: values[key] for key in _column_keys(type(row)) if key in values}


async def get_or_404(session: AsyncSession, model: type[ModelT], key: object, what: str) -> ModelT:
    """The row with primary key ``key``, or a 404 problem naming ``what``."""
    from slices_blueprint.core.errors import NotFound

    row = await session.get(model, key)
    if row is None:
        raise NotFound(f"no such {what}")
    return row


async def delete_older_than(session: AsyncSession, column: InstrumentedAttribute[dt.datetime], hours: int,
                            event: str) -> int:
    """Delete the rows whose ``column`` is older than ``hours``; log ``event`` with how many."""
    cutoff = utcnow() - dt.timedelta(hours=hours)
    result = await session.execute(delete(column.class_).where(column < cutoff))
    count = result.rowcount or 0
    if count:
        log.info(event, rows=count, older_than=cutoff.isoformat())
    return count
