"""FastAPI dependencies shared by every domain: settings and the request's DB session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.api_paths import API_PREFIX, BI_PREFIX
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database

__all__ = ["API_PREFIX", "BI_PREFIX", "DatabaseDep", "SessionDep", "SettingsDep", "get_db", "get_session", "get_settings_dep",
           "one_snapshot", "read_only"]

EndpointT = TypeVar("EndpointT", bound=Callable)


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings (``async``: a plain function would be run in a thread per request)."""
    return request.app.state.settings


async def get_db(request: Request) -> Database:
    return request.app.state.db


SESSION_OPENER = "_session_opener"  # the Database method a marked view's session comes from


def _opened_by(endpoint: EndpointT, opener: Callable[[Database], AbstractAsyncContextManager[AsyncSession]]) -> EndpointT:
    setattr(endpoint, SESSION_OPENER, opener)
    return endpoint


def read_only(endpoint: EndpointT) -> EndpointT:
    """Mark a view that only reads: its request's session is a ``Database.read_session`` (no
    BEGIN/COMMIT round trips), whose single-statement reads need no transaction."""
    return _opened_by(endpoint, Database.read_session)


def one_snapshot(endpoint: EndpointT) -> EndpointT:
    """Mark a view that reads rows changing together in several statements: its request's
    session is a ``Database.snapshot_session``, whose statements all see one instant (read
    committed, a commit between two of them would show half of a change)."""
    return _opened_by(endpoint, Database.snapshot_session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the view returns, rolled back on error
    (a :func:`read_only` view's reads: one implicit transaction per statement; a
    :func:`one_snapshot` view's: one snapshot for all)."""
    opener = getattr(request.scope.get("endpoint"), SESSION_OPENER, Database.session)
    async with opener(request.app.state.db) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_db)]  # plain reads: Database.plain_read, no session
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]  # commit before the response
