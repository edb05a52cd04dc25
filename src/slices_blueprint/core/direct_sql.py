"""SQLAlchemy Core statements run straight on the psycopg connection under a session.

Each statement shape is compiled once (SQL text with ``%(name)s`` placeholders and its
columns' bind processors, e.g. JSONB); an execution then costs what psycopg costs, without
SQLAlchemy's per-statement work (building the statement, its cache key, the result wrapper).
It runs in the session's transaction: committed or rolled back with it, and fails as
``session.execute`` would (psycopg's errors raised as SQLAlchemy's: ``IntegrityError``...).
Used where requests are hot (accepting resource requests); everything else keeps the ORM.
:class:`Writes` gathers a transaction's inserts into one statement: one round trip for all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import ClauseElement, Table, TypeDecorator
from sqlalchemy.dialects.postgresql import dialect as postgresql_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.responses import plain_json

_DRIVER_CONNECTION = "direct_sql.driver_connection"


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection:
    """The psycopg connection of ``session``'s transaction (begun if it was not); remembered
    for that transaction (asking SQLAlchemy for it costs more than most statements)."""
    transaction = session.sync_session.get_transaction()
    known = session.info.get(_DRIVER_CONNECTION)
    if transaction is not None and known is not None and known[0] is transaction:
        return known[1]
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    session.info[_DRIVER_CONNECTION] = (session.sync_session.get_transaction(), connection)
    return connection


@asynccontextmanager
async def cursor_of(session: AsyncSession, sql: str) -> AsyncIterator[psycopg.AsyncCursor]:
    """A cursor on the session's connection; psycopg's errors come out as SQLAlchemy's
    (``IntegrityError``, ``OperationalError``...), wrapping them, the parameters hidden."""
    connection = await driver_connection(session)
    try:
        async with connection.cursor() as cursor:
            yield cursor
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error, hide_parameters=True,
                                  dialect=session.get_bind().dialect) from exc


@dataclass(frozen=True)
class Compiled:
    """A statement's SQL for psycopg and the bind processors of its parameters."""

    sql: str
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` as psycopg takes them (each through its column type's processor)."""
        params = dict(values)
        for name, process in self.processors:
            params[name] = process(params[name])
        return params


@cache
def _constant(dialect: Dialect, statement: ClauseElement) -> Compiled:
    """``statement`` (its parameters given as ``bindparam``) compiled for psycopg, once."""
    compiled = statement.compile(dialect=dialect)
    processors = tuple((name, process) for name, param in compiled.binds.items()
                       if (process := param.type.dialect_impl(dialect).bind_processor(dialect)) is not None)
    return Compiled(str(compiled), processors)


async def fetch_one(session: AsyncSession, statement: ClauseElement, **params: Any) -> tuple | None:
    r"""The first row of ``statement``, a module-level constant whose parameters are
    ``bindparam``\ s named as ``params`` (compiled once per constant). Like any statement
    here, it does not flush the session's pending ORM changes first."""
    compiled = _constant(session.get_bind().dialect, statement)
    async with cursor_of(session, compiled.sql) as cursor:
        await cursor.execute(compiled.sql, compiled.params(params))
        return await cursor.fetchone()


def _with_defaults(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` plus the Python-side defaults of the columns it leaves out (as SQLAlchemy's
    own insert would fill them); server-side defaults are left to PostgreSQL."""
    filled = dict(row)
    for column in table.columns:
        default = column.default
        if column.key in filled or default is None:
            continue
        if default.is_scalar:
            filled[column.key] = default.arg
        elif default.is_callable:
            filled[column.key] = default.arg(None)
    return filled


_QUOTE = postgresql_dialect().identifier_preparer.quote


def _merged(params: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    clash = params.keys() & more.keys()
    if clash:
        raise ValueError(f"parameters given twice: {sorted(clash)}")
    return {**params, **more}


@cache
def _populated(table: Table, keys: tuple[str, ...]) -> tuple[str, str]:
    """The quoted columns ``keys`` of ``table``, and the same read from the alias ``r``."""
    columns = [table.c[key] for key in keys]
    typed = [c.name for c in columns if isinstance(c.type, TypeDecorator)]
    if typed:  # its Python-side conversion would be skipped: the values go as JSON
        raise ValueError(f"insert into {table.name}: columns of a TypeDecorator {typed}")
    names = [_QUOTE(c.name) for c in columns]
    return ", ".join(names), ", ".join(f"r.{n}" for n in names)


@dataclass
class Writes:
    r"""A transaction's writes as one statement: each a part of a ``WITH`` query (PostgreSQL's
    data-modifying statements in ``WITH``), one round trip for all of them.

    Every part runs, once, on the same snapshot: a part reads another's rows only through
    what that one ``RETURNING``\s or selects (a name given to :meth:`query`); constraints are
    checked at the statement's end, so the rows may reference each other. Rows go to
    PostgreSQL as one JSON array per table (``jsonb_populate_recordset``), typed by the table
    itself; the statement fails as one (``IntegrityError``... naming the constraint)."""

    parts: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def query(self, name: str, sql: str, **params: Any) -> None:
        """Add ``sql`` (``%(param)s`` placeholders, named as ``params``) as the part ``name``."""
        self.parts.append(f"{name} AS ({sql})")
        self.params = _merged(self.params, params)

    def insert(self, name: str, table: Table, rows: Sequence[Mapping[str, Any]], *,
               joined: str = "", extra: Mapping[str, str] | None = None,
               on_conflict_do_nothing: Sequence[str] = (), returning: str | None = None) -> None:
        """Insert ``rows`` (each setting the same columns; Python-side defaults filled) into
        ``table`` as the part ``name``; ``extra`` columns are SQL expressions on the row
        ``r`` (with ``ordinality``: its place in ``rows``, from 1) and what ``joined`` joins.
        Rows clashing on the unique index of the ``on_conflict_do_nothing`` columns are
        skipped; the part selects the ``returning`` column of those inserted."""
        if not rows:
            return
        filled = [_with_defaults(table, row) for row in rows]
        columns, values = _populated(table, tuple(filled[0]))
        if extra:
            columns += "".join(f", {_QUOTE(table.c[key].name)}" for key in extra)
            values += "".join(f", {sql}" for sql in extra.values())
        sql = (f"INSERT INTO {_QUOTE(table.name)} ({columns}) SELECT {values} "
               f"FROM jsonb_populate_recordset(NULL::{_QUOTE(table.name)}, %({name})s::jsonb) "
               f"WITH ORDINALITY AS r {joined}")
        if on_conflict_do_nothing:
            sql += f" ON CONFLICT ({', '.join(_QUOTE(table.c[c].name) for c in on_conflict_do_nothing)}) DO NOTHING"
        if returning:
            sql += f" RETURNING {_QUOTE(table.c[returning].name)}"
        self.query(name, sql, **{name: plain_json(filled).decode()})

    async def run(self, session: AsyncSession, final: str = "SELECT", **params: Any) -> list[tuple]:
        """Run every part, then ``final`` (a query on the parts, or on nothing), in the
        session's transaction; answer ``final``'s rows."""
        if not self.parts:
            raise ValueError("nothing to write")
        sql = f"WITH {', '.join(self.parts)} {final}"
        async with cursor_of(session, sql) as cursor:
            await cursor.execute(sql, _merged(self.params, params))
            return await cursor.fetchall() if cursor.description else []
